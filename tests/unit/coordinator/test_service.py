"""The coordinator's handlers without a server: registration and training-job submission."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.errors import DataValidationError, ProtocolError, TrustError
from coordinator.config import CoordinatorConfig
from coordinator.service import Coordinator
from proto.fedcredit.v1 import common_pb2, coordinator_pb2


@pytest.fixture()
def core(tmp_path: Path) -> Iterator[Coordinator]:
    coordinator = Coordinator(CoordinatorConfig(state_dir=tmp_path / "coordinator"),
                              insecure=True)
    for party, role in (("bank", common_pb2.ROLE_LABEL), ("core", common_pb2.ROLE_FEATURE)):
        coordinator.register(_registration(party, role), caller=None)
    yield coordinator
    coordinator.close()


def _registration(party: str, role: int, signed_for: str | None = None,
                  ) -> coordinator_pb2.RegisterNodeRequest:
    key = common_pb2.PeerKey(party=signed_for or party, sealing_public_key=bytes(32))
    info = common_pb2.NodeInfo(party=party, role=role, rows=10, key=key)
    return coordinator_pb2.RegisterNodeRequest(endpoint="127.0.0.1:1", info=info)


def _train(core: Coordinator, algorithm: str, job_id: str = "", **fields: object,
           ) -> coordinator_pb2.JobStatus:
    job = {"label": "bank", "features": ["core"], "align_job": "align-1", **fields}
    return core.train(coordinator_pb2.TrainRequest(algorithm=algorithm, job_id=job_id,
                                                   config_json=json.dumps(job)), caller="op")


def test_registered_nodes_are_listed_by_role(core: Coordinator) -> None:
    nodes = {n.party: n.role for n in core.store.nodes()}
    assert nodes == {"bank": "label", "core": "feature"}


def test_a_sealing_key_signed_for_another_party_is_refused(core: Coordinator) -> None:
    with pytest.raises(TrustError, match="signed for 'bank'"):
        core.register(_registration("tax", common_pb2.ROLE_FEATURE, signed_for="bank"), None)


def test_an_unknown_algorithm_lists_the_declared_ones(core: Coordinator) -> None:
    with pytest.raises(DataValidationError, match="expected one of binning, sbt, scorecard, vlr"):
        _train(core, "xgb")


def test_a_typo_in_the_algorithm_table_names_the_key(core: Coordinator) -> None:
    with pytest.raises(DataValidationError, match=r"\[vlr\].*\n.*lerning_rate: unknown key"):
        _train(core, "vlr", vlr={"lerning_rate": 0.1})
    with pytest.raises(DataValidationError, match=r"trees: .*greater than|trees \(0\)"):
        _train(core, "sbt", sbt={"trees": 0})
    assert core.store.jobs() == []  # nothing was created


def test_a_stray_key_in_the_job_is_named(core: Coordinator) -> None:
    with pytest.raises(DataValidationError, match="align_jobs: unknown key"):
        _train(core, "vlr", align_jobs="x")


def test_a_job_needs_registered_parties_in_their_roles(core: Coordinator) -> None:
    with pytest.raises(ProtocolError, match="'core' is not a registered label node"):
        core.train(coordinator_pb2.TrainRequest(algorithm="vlr", config_json=json.dumps(
            {"label": "core", "features": ["bank"], "align_job": "a"})), caller="op")
    assert core.store.jobs() == []


def _aligned(core: Coordinator, job_id: str = "align-1", state: str = "done",
             parties: tuple[str, ...] = ("bank", "core"), mode: str = "PSI_MODE_FULL") -> None:
    core.store.create_job(job_id, "align", list(parties), {"mode": mode})
    core.store.update_job(job_id, state=state)


def test_training_on_a_missing_alignment_is_refused_with_the_command_to_make_it(
        core: Coordinator) -> None:
    with pytest.raises(DataValidationError, match="align_job 'align-1': no such alignment job; "
                       "create it with `fedcredit align --label bank --feature core "
                       "--job-id align-1`"):
        _train(core, "vlr", job_id="tr-1")
    assert core.store.jobs() == []


@pytest.mark.parametrize(("state", "parties", "mode", "expected"), [
    ("failed", ("bank", "core"), "PSI_MODE_FULL", "is failed, not done"),
    ("done", ("bank",), "PSI_MODE_FULL", "did not align core"),
    ("done", ("bank", "core"), "PSI_MODE_CARDINALITY", "cardinality-only"),
])
def test_an_unusable_alignment_is_refused(core: Coordinator, state: str,
                                          parties: tuple[str, ...], mode: str,
                                          expected: str) -> None:
    _aligned(core, state=state, parties=parties, mode=mode)
    with pytest.raises(DataValidationError, match=expected):
        _train(core, "vlr", job_id="tr-1")
    assert core.store.job("tr-1") is None


def test_a_job_id_is_checked_and_never_reused_across_kinds(core: Coordinator) -> None:
    _aligned(core)
    core.store.create_job("tr-1", "vlr", ["bank", "core"])
    core.store.update_job("tr-1", state="done")
    with pytest.raises(DataValidationError, match=r"job tr-1 exists \(a vlr job, done\)"):
        core.align(coordinator_pb2.AlignRequest(label_party="bank", job_id="tr-1"), "op")
    with pytest.raises(DataValidationError, match=r"job align-1 exists \(an align job, done\)"):
        _train(core, "vlr", job_id="align-1")
    for bad in ("../up", "a b"):
        with pytest.raises(DataValidationError, match="1-64 letters"):
            core.align(coordinator_pb2.AlignRequest(label_party="bank", job_id=bad), "op")
        with pytest.raises(DataValidationError, match="1-64 letters"):
            _train(core, "vlr", job_id=bad)
    assert [(j.job_id, j.kind, j.state) for j in core.store.jobs()] == [
        ("align-1", "align", "done"), ("tr-1", "vlr", "done")]


def test_delete_refuses_a_running_job_and_a_registered_model_without_force(
        core: Coordinator) -> None:
    core.store.create_job("tr-1", "vlr", ["bank", "core"])
    delete = coordinator_pb2.DeleteJobRequest(job_id="tr-1")
    with pytest.raises(ProtocolError, match="is running; cancel it first"):
        core.delete_job(delete, "op")
    core.store.register_model("m", "vlr", "tr-1", ["bank", "core"], {})
    core.store.update_job("tr-1", state="done")
    with pytest.raises(ProtocolError, match="trained model m-v1.*--force"):
        core.delete_job(delete, "op")
    core.delete_job(coordinator_pb2.DeleteJobRequest(job_id="tr-1", force=True), "op")
    assert core.store.job("tr-1") is None and core.store.model_of_job("tr-1") is not None


def test_only_a_running_training_job_can_be_cancelled(core: Coordinator) -> None:
    _aligned(core)
    with pytest.raises(ProtocolError, match="only training jobs cancel"):
        core.cancel_job("align-1", "op")
    with pytest.raises(ProtocolError, match="no job 'nope'"):
        core.cancel_job("nope", "op")


def test_show_leaves_secrets_out_of_the_settings(core: Coordinator) -> None:
    core.store.create_job("tr-1", "vlr", ["bank", "core"],
                          {"align_job": "a", "vlr": {"lr": 0.1, "api_token": "x"},
                           "secret_key": "y"})
    shown = json.loads(core.get_job("tr-1").config_json)
    assert shown == {"align_job": "a", "vlr": {"lr": 0.1}}


def test_the_daily_cap_on_pseudonym_evaluations_survives_a_restart(tmp_path: Path) -> None:
    config = CoordinatorConfig(state_dir=tmp_path / "coordinator", pseudonym_evaluations_per_day=3)
    points = coordinator_pb2.PseudonymPoints(points=(b"\x09" + bytes(31)) * 2)
    first = Coordinator(config, insecure=True)
    first.scoring.evaluate(points, caller=None, insecure=True)  # 2 of 3
    first.close()

    again = Coordinator(config, insecure=True)  # a restart: the count is in its SQLite store
    try:
        with pytest.raises(ProtocolError, match=r"has had 2 pseudonym points evaluated today; "
                                                r"2 more would pass the cap of 3 a day "
                                                r"\(pseudonym_evaluations_per_day"):
            again.scoring.evaluate(points, caller=None, insecure=True)
        one = coordinator_pb2.PseudonymPoints(points=b"\x09" + bytes(31))
        assert len(again.scoring.evaluate(one, caller=None, insecure=True).points) == 32
        audit = (tmp_path / "coordinator" / "audit.jsonl").read_text()
        assert "pseudonyms.refused" in audit and "pseudonym_evaluations_per_day" in audit
    finally:
        again.close()


def test_a_scorecard_on_a_binning_job_that_never_ran_is_refused(core: Coordinator) -> None:
    with pytest.raises(DataValidationError, match="binning_job 'nope'.*no finished binning"):
        _train(core, "scorecard", scorecard={"binning_job": "nope"})
    assert core.store.jobs() == []

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
    with pytest.raises(DataValidationError, match="expected one of sbt, vlr"):
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

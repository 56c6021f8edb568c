"""Vertical LR through real processes: accuracy against the pooled twin, faults, batch floors."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from fedcredit.demo.parties import party_specs
from fedcredit.evaluate import compare_vlr, load_party_tables
from fedcredit.launcher import LocalNetwork
from fedcredit.synth import synthesize
from models.vlr import VlrConfig
from proto.fedcredit.v1 import coordinator_pb2, node_pb2
from tests.integration.conftest import run_job, submit_job, wait_job
from tests.integration.give_credit import give_credit_specs

FEATURES = ["core", "logistics", "tax"]
HYPER = {"learning_rate": 0.15, "batch_size": 512, "max_epochs": 6, "patience": 10,
         "validation_fraction": 0.25, "seed": 5}


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    root = tmp_path_factory.mktemp("vlr")
    synth = synthesize(root / "data", enterprises=6000, seed=5)
    network = LocalNetwork(root, party_specs(synth))
    with network:
        network.start(timeout=120)
        network.stub().Align(coordinator_pb2.AlignRequest(
            label_party="bank", mode=node_pb2.PSI_MODE_FULL, job_id="align"), timeout=300)
        yield network


def _train(net: LocalNetwork, job_id: str, **overrides: Any) -> coordinator_pb2.JobStatus:
    return submit_job(net.stub(), job_id, "vlr", {**HYPER, **overrides}, features=FEATURES,
                      align_job="align", model_name="", step_attempts=2)


def _best_auc(job: coordinator_pb2.JobStatus) -> float:
    """The final model's AUC: computed once, it completes the last round's report."""
    history = json.loads(job.metrics_json)["history"]
    assert all(h["auc"] is None for h in history[:-1]) and history[-1]["final"]
    return float(history[-1]["auc"])


def test_joint_model_matches_pooled_twin_and_beats_bank_alone(net: LocalNetwork) -> None:
    _train(net, "plain-run")
    job = wait_job(net.stub(), "plain-run")
    assert job.state == "done", job.error

    tables = load_party_tables({p.name: p.data for p in net.parties}, "bank")
    twins = compare_vlr(net.workdir / "state", tables, "bank", FEATURES, "align",
                        VlrConfig(**HYPER))
    auc = _best_auc(job)
    assert abs(auc - twins["auc_centralized"]) <= 0.005
    # The +0.05 of the issue is measured by the demo at 20,000 SMEs; this is a smaller sample.
    assert auc >= twins["auc_bank_only"] + 0.03
    models = net.stub().ListModels(coordinator_pb2.ListModelsRequest(), timeout=30).models
    assert any(m.job_id == "plain-run" and list(m.parties) == ["bank", *FEATURES]
               for m in models)
    for party in ["bank", *FEATURES]:  # every party keeps its own part of the model
        assert (net.workdir / "state" / party / "models" / "plain-run" / "model.json").exists()


def test_feature_node_killed_mid_training_then_resumed(net: LocalNetwork) -> None:
    reference = wait_job(net.stub(), "plain-run")
    _train(net, "faulty-run")
    wait_job(net.stub(), "faulty-run", lambda j: json.loads(j.metrics_json).get("epoch", -1) >= 1)
    net.stop_process("logistics", sig=signal.SIGKILL)

    failed = wait_job(net.stub(), "faulty-run", timeout=120)
    assert failed.state == "failed"
    assert "logistics" in failed.error

    net.start_node("logistics")
    net.wait_serving(["logistics"], timeout=120)
    net.stub().ResumeJob(coordinator_pb2.GetJobRequest(job_id="faulty-run"), timeout=60)
    resumed = wait_job(net.stub(), "faulty-run")
    assert resumed.state == "done", resumed.error
    history = json.loads(resumed.metrics_json)["history"]
    assert [h["epoch"] for h in history] == list(range(len(history)))
    assert abs(_best_auc(resumed) - _best_auc(reference)) <= 0.002


@pytest.mark.parametrize(("job_id", "overrides", "named"), [
    ("tiny-batch", {"batch_size": 32}, ["min_batch"]),
    ("typo", {"lerning_rate": 0.1}, ["lerning_rate: unknown key"]),
    ("weak-mask", {"mask_bits": 30}, ["mask_bits 30 must be in 40..64"]),
    ("weak-he", {"params": {"poly_modulus_degree": 4096, "coeff_mod_bit_sizes": [60, 40, 40],
                            "scale_bits": 40}}, ["params", "128"]),
])
def test_bad_settings_are_refused_naming_them_before_any_job_exists(
        net: LocalNetwork, job_id: str, overrides: dict[str, Any], named: list[str]) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _train(net, job_id, **overrides)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert all(part in (err.value.details() or "") for part in named), err.value.details()
    with pytest.raises(grpc.RpcError):
        net.stub().GetJob(coordinator_pb2.GetJobRequest(job_id=job_id), timeout=30)


def test_feature_node_enforces_its_own_floor(net: LocalNetwork) -> None:
    _train(net, "low-floor", batch_size=48, min_batch=16)
    job = wait_job(net.stub(), "low-floor")
    assert job.state == "failed"
    assert "below this node's minimum of 64" in job.error


def test_resume_of_a_finished_job_is_refused(net: LocalNetwork) -> None:
    with pytest.raises(grpc.RpcError) as err:
        net.stub().ResumeJob(coordinator_pb2.GetJobRequest(job_id="plain-run"), timeout=30)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_give_credit_matches_centralised_lr(tmp_path: Path) -> None:
    """The public data: bank = guest (x0..x4 + y), one feature node = host (x0..x4)."""
    specs = give_credit_specs()
    hyper = {"learning_rate": 0.5, "batch_size": 4096, "max_epochs": 10, "patience": 20,
             "validation_fraction": 0.0, "seed": 0}
    with LocalNetwork(tmp_path, specs) as gc:
        gc.start(timeout=120)
        gc.stub().Align(coordinator_pb2.AlignRequest(label_party="bank", job_id="gc"),
                        timeout=600)
        job = run_job(gc.stub(), "gc-vlr", "vlr", hyper, align_job="gc", model_name="",
                      timeout=600)
        assert job.state == "done", job.error
        tables = load_party_tables({p.name: p.data for p in specs}, "bank")
        twins = compare_vlr(tmp_path / "state", tables, "bank", ["host"], "gc",
                            VlrConfig(**hyper))
    print(f"give_credit: federated {_best_auc(job):.4f}, "
          f"centralised {twins['auc_centralized']:.4f}, bank only {twins['auc_bank_only']:.4f}")
    assert abs(_best_auc(job) - twins["auc_centralized"]) <= 0.005

"""Jobs through real processes and the CLI: unique ids, alignment checked at submission, show,
cancel, delete, Ctrl-C while following; decisions that say what they are (refer, refused)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from common.uscc import generate_uscc
from fedcredit.cli.exit_codes import ExitCode
from fedcredit.launcher import LocalNetwork
from node.config import load_node_config
from node.policy import CreditPolicy
from node.scoring.bank import BankScorer
from proto.fedcredit.v1 import coordinator_pb2
from tests.integration.conftest import Tables, wait_job

FEATURES = ["core", "logistics"]
SMALL = {"batch_size": 128, "max_epochs": 2, "validation_fraction": 0.25, "seed": 1}
LONG = {"batch_size": 64, "max_epochs": 200, "patience": 200, "validation_fraction": 0.25}


@pytest.fixture(scope="module")
def trained(network: LocalNetwork) -> Iterator[LocalNetwork]:
    """The network with alignment `al` and a finished training job `tr`."""
    stub = network.stub()
    stub.Align(coordinator_pb2.AlignRequest(label_party="bank", job_id="al"), timeout=300)
    stub.Train(coordinator_pb2.TrainRequest(algorithm="vlr", job_id="tr",
                                            config_json=json.dumps(_job("al", SMALL))), timeout=60)
    assert wait_job(stub, "tr").state == "done"
    yield network


def _job(align_job: str, vlr: dict[str, Any]) -> dict[str, Any]:
    return {"label": "bank", "features": FEATURES, "align_job": align_job, "vlr": vlr}


def _started(job: coordinator_pb2.JobStatus) -> bool:
    return bool(json.loads(job.metrics_json).get("epoch", -1) >= 0)


def _operator(net: LocalNetwork) -> list[str]:
    return ["--coordinator", net.coordinator_address, "--pki", str(net.pki_dir),
            "--as", "operator"]


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fedcredit.cli.main", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"})


def _job_file(tmp_path: Path, align_job: str, vlr: dict[str, Any]) -> Path:
    path = tmp_path / "job.toml"
    lines = ['label = "bank"', f"features = {json.dumps(FEATURES)}",
             f'align_job = "{align_job}"', "[vlr]",
             *[f"{key} = {json.dumps(value)}" for key, value in vlr.items()]]
    path.write_text("\n".join(lines) + "\n")
    return path


def _job_ids(net: LocalNetwork) -> set[str]:
    return {j.job_id for j in net.stub().ListJobs(coordinator_pb2.ListJobsRequest(),
                                                  timeout=30).jobs}


def test_align_over_a_training_job_is_refused_and_the_model_stays(trained: LocalNetwork) -> None:
    before = trained.stub().GetJob(coordinator_pb2.GetJobRequest(job_id="tr"), timeout=30)

    result = _cli("align", "--label", "bank", "--job-id", "tr", *_operator(trained))

    assert result.returncode == ExitCode.INVALID_DATA, result.stderr
    assert "job tr exists (a vlr job, done); choose another --job-id" in result.stderr
    after = trained.stub().GetJob(coordinator_pb2.GetJobRequest(job_id="tr"), timeout=30)
    assert (after.kind, after.state, after.metrics_json) == ("vlr", "done", before.metrics_json)
    assert (trained.workdir / "state" / "bank" / "models" / "tr" / "model.json").exists()
    with pytest.raises(grpc.RpcError, match="nothing to resume"):  # done, not overwritten
        trained.stub().ResumeJob(coordinator_pb2.GetJobRequest(job_id="tr"), timeout=30)


def test_training_on_a_missing_alignment_is_refused_at_submission(
        trained: LocalNetwork, tmp_path: Path) -> None:
    result = _cli("train", "vlr", "--config", str(_job_file(tmp_path, "no-such-al", SMALL)),
                  "--job-id", "orphan", *_operator(trained))

    assert result.returncode == ExitCode.INVALID_DATA, result.stderr
    assert "align_job 'no-such-al': no such alignment job" in result.stderr
    assert "fedcredit align --label bank --feature core --feature logistics --job-id " \
           "no-such-al" in result.stderr
    assert "orphan" not in _job_ids(trained)


def test_cancel_stops_a_running_job_show_tells_it_and_it_resumes(trained: LocalNetwork) -> None:
    stub = trained.stub()
    stub.Train(coordinator_pb2.TrainRequest(algorithm="vlr", job_id="long",
                                            config_json=json.dumps(_job("al", LONG))), timeout=60)
    wait_job(stub, "long", _started)

    result = _cli("jobs", "cancel", "long", "--wait", "60", "--json", *_operator(trained))

    assert result.returncode == ExitCode.OK, result.stderr
    assert json.loads(result.stdout)["state"] == "cancelled"
    shown = _cli("jobs", "show", "long", "--json", *_operator(trained))
    job = json.loads(shown.stdout)
    assert job["state"] == "cancelled" and job["kind"] == "vlr"
    assert job["parties"] == ["bank", *FEATURES]
    assert job["config"]["align_job"] == "al" and job["config"]["vlr"]["max_epochs"] == 200
    assert "cancelled before step" in job["error"] and "fedcredit jobs resume long" in job["error"]
    epochs = job["metrics"]["epoch"]
    assert epochs < 10  # it stopped within a few steps, not at the end
    audit = (trained.workdir / "state" / "coordinator" / "audit.jsonl").read_text()
    assert "train.cancel" in audit and "train.cancelled" in audit
    table = _cli("jobs", "show", "long", *_operator(trained))
    assert table.returncode == ExitCode.OK and "cancelled" in table.stdout

    stub.ResumeJob(coordinator_pb2.GetJobRequest(job_id="long"), timeout=60)  # resumable
    assert _cli("jobs", "cancel", "long", *_operator(trained)).returncode == ExitCode.OK
    assert wait_job(stub, "long").state == "cancelled"


def test_delete_a_failed_job_and_a_trained_one_only_with_force(trained: LocalNetwork) -> None:
    stub = trained.stub()
    stub.Train(coordinator_pb2.TrainRequest(algorithm="vlr", job_id="floor", config_json=json.dumps(
        _job("al", {**SMALL, "batch_size": 48, "min_batch": 16}))), timeout=60)
    assert wait_job(stub, "floor").state == "failed"

    deleted = _cli("jobs", "delete", "floor", *_operator(trained))

    assert deleted.returncode == ExitCode.OK, deleted.stderr
    assert "deleted job floor (a vlr job, failed)" in deleted.stdout
    assert "floor" not in _job_ids(trained)
    refused = _cli("jobs", "delete", "tr", *_operator(trained))
    assert refused.returncode == ExitCode.PROTOCOL
    assert "trained model" in refused.stderr and "--force" in refused.stderr
    assert _cli("jobs", "delete", "tr", "--force", *_operator(trained)).returncode == ExitCode.OK
    models = stub.ListModels(coordinator_pb2.ListModelsRequest(), timeout=30).models
    assert any(m.job_id == "tr" for m in models)  # scoring with it goes on
    assert "tr" not in _job_ids(trained)
    again = _cli("align", "--label", "bank", "--job-id", "tr", *_operator(trained))
    assert again.returncode == ExitCode.INVALID_DATA and "trained model" in again.stderr


def test_ctrl_c_while_following_leaves_the_job_running_and_says_how_to_reach_it(
        trained: LocalNetwork, tmp_path: Path) -> None:
    follower = subprocess.Popen(
        [sys.executable, "-m", "fedcredit.cli.main", "train", "vlr", "--config",
         str(_job_file(tmp_path, "al", LONG)), "--job-id", "followed", *_operator(trained)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "200"})
    try:
        assert _exists(trained, "followed", 60), "the job was not submitted"
        wait_job(trained.stub(), "followed", _started)
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == ExitCode.INTERRUPTED
    assert "job followed continues at the coordinator" in err
    assert "fedcredit jobs show followed" in err and "fedcredit jobs cancel followed" in err
    assert trained.stub().GetJob(coordinator_pb2.GetJobRequest(job_id="followed"),
                                 timeout=30).state == "running"
    trained.stub().CancelJob(coordinator_pb2.GetJobRequest(job_id="followed"), timeout=30)
    assert wait_job(trained.stub(), "followed").state == "cancelled"


def _exists(net: LocalNetwork, job_id: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if job_id in _job_ids(net):
            return True
        time.sleep(0.2)
    return False


def test_nobody_holds_refer_and_over_budget_refused_by_name(
        trained: LocalNetwork, tables: Tables, tmp_path: Path) -> None:
    held = set().union(*map(set, tables.ids.values()))
    bank = tables.ids["bank"]
    over = next(i for i in bank if i in tables.ids["core"])
    others = [i for i in bank if i != over][:3]
    only_core = next(i for i in tables.ids["core"]
                     if i not in set(bank) and i not in set(tables.ids["logistics"]))
    scorer = BankScorer(load_node_config(trained.config_path("bank")), CreditPolicy())
    try:
        for n in range(20):  # the feature nodes' daily budget for one enterprise
            assert scorer.score([over], consent=f"c-{n}")[0].outcome == "decided"
        nobody = next(i for i in generate_uscc(np.random.default_rng(99), 50) if i not in held)
    finally:
        scorer.close()
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join([over, *others, only_core, nobody]) + "\n")
    out = tmp_path / "decisions.csv"

    result = _cli("score", "--bank", "bank", "--config", str(trained.config_path("bank")),
                  "--ids", str(ids), "--consent", "batch-1", "--out", str(out), "--json")

    assert result.returncode == ExitCode.OK, result.stderr
    decisions = {d["id"]: d for d in json.loads(result.stdout)}
    assert decisions[over]["outcome"] == "refused"
    assert decisions[over]["reason"].startswith("refused by the network")
    assert not any(name in decisions[over]["reason"] for name in FEATURES)  # no node named
    assert decisions[over]["grade"] is None and decisions[over]["score"] is None
    for ident in [*others, only_core]:
        assert decisions[ident]["outcome"] == "decided" and decisions[ident]["grade"]
    assert decisions[only_core]["parties_covering"] == 1
    assert decisions[nobody]["outcome"] == "refer"
    assert decisions[nobody]["reason"] == "no party holds this enterprise"
    assert decisions[nobody]["grade"] is None and decisions[nobody]["credit_line"] is None
    with out.open(newline="") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    assert rows[over]["outcome"] == "refused" and rows[over]["grade"] == ""
    assert rows[nobody]["outcome"] == "refer" and rows[nobody]["score"] == ""
    assert rows[others[0]]["outcome"] == "decided" and rows[others[0]]["grade"]

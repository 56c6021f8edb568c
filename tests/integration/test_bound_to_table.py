"""Alignments and models bound to the tables they were built on, through real processes.

A feature node whose table was re-exported with its rows shuffled refuses to train on the old
alignment (naming its table, the alignment and the fix); aligned again, it trains the same
model as before. A bank or feature node whose config lists its columns in another order scores
the same; one that dropped a column the model needs refuses, naming the feature.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tomli_w

from common.errors import PeerUnavailable
from fedcredit.demo.parties import MONITORING, party_specs
from fedcredit.evaluate import compare_vlr, load_party_tables, plaintext_probabilities
from fedcredit.launcher import LocalNetwork
from fedcredit.synth import synthesize
from models.vlr import VlrConfig
from node.columns import MissingFeature
from node.config import load_node_config
from node.policy import CreditPolicy
from node.scoring.bank import BankScorer
from proto.fedcredit.v1 import coordinator_pb2, node_pb2

FEATURES = ["core", "logistics", "tax"]
HYPER = {"learning_rate": 0.15, "batch_size": 256, "max_epochs": 3, "patience": 10,
         "validation_fraction": 0.25, "seed": 5}


@dataclass
class Run:
    """The network and what the first part of the module measured."""

    net: LocalNetwork
    auc: dict[str, float]


def _align(net: LocalNetwork, job_id: str) -> None:
    net.stub().Align(coordinator_pb2.AlignRequest(
        label_party="bank", mode=node_pb2.PSI_MODE_FULL, job_id=job_id), timeout=300)


def _train(net: LocalNetwork, job_id: str, align_job: str) -> coordinator_pb2.JobStatus:
    settings = {"label": "bank", "features": FEATURES, "align_job": align_job,
                "step_attempts": 2, "vlr": HYPER}
    net.stub().Train(coordinator_pb2.TrainRequest(algorithm="vlr",
                                                  config_json=json.dumps(settings),
                                                  job_id=job_id), timeout=60)
    deadline = time.monotonic() + 600
    while True:
        job = net.stub().GetJob(coordinator_pb2.GetJobRequest(job_id=job_id), timeout=30)
        if job.state != "running":
            return job
        assert time.monotonic() < deadline, f"job {job_id} still running"
        time.sleep(0.3)


def _best_auc(job: coordinator_pb2.JobStatus) -> float:
    metrics = json.loads(job.metrics_json)
    return float(next(h["auc"] for h in metrics["history"]
                      if h["epoch"] == metrics["best_epoch"]))


def _restart(net: LocalNetwork, name: str, data: dict[str, Any] | None = None) -> None:
    """Stop a node, optionally rewrite its `[data]` table, start it and wait until it listens."""
    net.stop_process(name)
    path = net.config_path(name)
    config = tomllib.loads(path.read_text())
    if data is not None:
        config["data"] = data
        path.write_text(tomli_w.dumps(config))
    net.start_node(name)
    host, port = config["listen"].rsplit(":", 1)
    deadline = time.monotonic() + 90
    while True:
        net.check_alive()
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, f"{name} did not come back"
            time.sleep(0.3)
    net.wait_serving([name], timeout=90)


def _data(net: LocalNetwork, name: str) -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads(net.config_path(name).read_text())["data"]
    return data


def _shuffle_rows(path: Path, seed: int) -> None:
    """The same file content with its data rows in another order (a re-export)."""
    header, *rows = path.read_text().splitlines(keepends=True)
    random.Random(seed).shuffle(rows)
    path.write_text(header + "".join(rows))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("bound")
    synth = synthesize(root / "data", enterprises=1500, seed=4)
    net = LocalNetwork(root, party_specs(synth))
    with net:
        net.start(timeout=120)
        yield Run(net=net, auc={})


def test_a_shuffled_table_is_refused_on_its_old_alignment_and_trains_the_same_when_realigned(
        run: Run) -> None:
    net, state = run.net, run.net.workdir / "state"
    _align(net, "al-1")
    before = _train(net, "tr-1", "al-1")
    assert before.state == "done", before.error
    tables = load_party_tables({p.name: p.data for p in net.parties}, "bank")
    twin_before = compare_vlr(state, tables, "bank", FEATURES, "al-1", VlrConfig(**HYPER))

    core_csv = Path(_data(net, "core")["path"])
    _shuffle_rows(core_csv, seed=11)
    _restart(net, "core")
    stale = _train(net, "tr-stale", "al-1")

    assert stale.state == "failed"
    assert f"core: table {core_csv} changed since alignment al-1" in stale.error
    assert "re-run `fedcredit align --label bank --job-id NEW`" in stale.error
    assert "FileNotFoundError" not in stale.error and "internal error" not in stale.error
    assert not (state / "core" / "models" / "tr-stale").exists()

    # The bank draws a fresh random row order per alignment; give the new one the old order so
    # the two runs see the same training positions and the comparison is exact.
    (state / "bank" / "alignment" / "al-2").mkdir(parents=True)
    shutil.copy(state / "bank" / "alignment" / "al-1" / "order.npy",
                state / "bank" / "alignment" / "al-2" / "order.npy")
    _align(net, "al-2")
    after = _train(net, "tr-2", "al-2")
    assert after.state == "done", after.error
    tables = load_party_tables({p.name: p.data for p in net.parties}, "bank")
    twin_after = compare_vlr(state, tables, "bank", FEATURES, "al-2", VlrConfig(**HYPER))

    run.auc = {"federated_before": _best_auc(before), "federated_after": _best_auc(after),
               "twin_before": twin_before["auc_centralized"],
               "twin_after": twin_after["auc_centralized"]}
    print("measured AUCs:", run.auc)
    assert twin_after["auc_centralized"] == twin_before["auc_centralized"]  # same pooled rows
    assert abs(run.auc["federated_after"] - run.auc["federated_before"]) <= 1e-6  # CKKS noise


def _ids(net: LocalNetwork) -> list[str]:
    tables = load_party_tables({p.name: p.data for p in net.parties}, "bank")
    bank = set(tables["bank"].ids)
    elsewhere = [i for i in tables["core"].ids if i not in bank][:20]
    return list(tables["bank"].ids[:80]) + elsewhere


def _score(net: LocalNetwork, ids: list[str], consent: str) -> list[Any]:
    scorer = BankScorer(load_node_config(net.config_path("bank")), CreditPolicy())
    try:
        return scorer.score(ids, consent=consent)
    finally:
        scorer.close()


def test_reordered_columns_score_the_same_and_a_dropped_one_is_refused(run: Run) -> None:
    net = run.net
    if not (net.workdir / "state" / "bank" / "models" / "tr-2").exists():
        pytest.skip("needs the model trained by the test above")
    ids = _ids(net)
    first = _score(net, ids, "consent-a")
    again = _score(net, ids, "consent-b")
    bank_data, core_data = _data(net, "bank"), _data(net, "core")
    _restart(net, "bank", {**bank_data, "features": bank_data["features"][::-1]})
    _restart(net, "core", {**core_data, "features": core_data["features"][::-1]})
    reordered = _score(net, ids, "consent-c")

    pd = {name: np.asarray([d.probability for d in run_]) for name, run_ in
          (("first", first), ("again", again), ("reordered", reordered))}
    noise = float(np.abs(pd["again"] - pd["first"]).max())
    moved = float(np.abs(pd["reordered"] - pd["first"]).max())
    print(f"max |PD difference|: same config {noise:.3g}, reordered columns {moved:.3g}")
    assert moved <= max(10 * noise, 1e-9)  # CKKS noise only, no other change
    assert [d.reasons for d in reordered] == [d.reasons for d in first]
    specs = {p.name: p.data for p in net.parties}
    state = net.workdir / "state"
    plain = plaintext_probabilities(state, load_party_tables(specs, "bank"), "tr-2", ids)
    plain_reordered = plaintext_probabilities(state, load_party_tables(
        {**specs, "bank": _data(net, "bank"), "core": _data(net, "core")}, "bank"), "tr-2", ids)
    assert np.array_equal(plain_reordered, plain)  # the model's inputs are the same, exactly
    assert np.abs(pd["reordered"] - plain).max() <= 1e-6

    dropped = bank_data["features"][1]
    _restart(net, "bank", {**bank_data, "features": [f for f in bank_data["features"]
                                                     if f != dropped]})
    with pytest.raises(MissingFeature, match=f"needs feature '{dropped}', which bank's table"):
        _score(net, ids, "consent-d")
    cli = subprocess.run(
        [sys.executable, "-m", "fedcredit.cli.main", "score", "--bank", "bank", "--id", ids[0],
         "--consent", "consent-e", "--config", str(net.config_path("bank"))],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "400"})
    assert cli.returncode != 0 and "Traceback" not in cli.stderr
    assert f"needs feature '{dropped}'" in " ".join(cli.stderr.split())

    _restart(net, "bank", bank_data)
    monitored = {limit["column"] for limit in MONITORING["core"]["limits"]}
    watched = next(f for f in core_data["features"] if f in monitored)
    with pytest.raises(PeerUnavailable, match=f"limits of core name column.*{watched}"):
        _restart(net, "core", {**core_data, "features": [f for f in core_data["features"]
                                                         if f != watched]})
    core_dropped = next(f for f in core_data["features"] if f not in monitored)
    _restart(net, "core", {**core_data, "features": [f for f in core_data["features"]
                                                     if f != core_dropped]})
    with pytest.raises(grpc.RpcError) as err:
        _score(net, ids, "consent-f")
    assert f"needs feature '{core_dropped}', which core's table" in (err.value.details() or "")

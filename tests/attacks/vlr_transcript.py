"""Transcripts of vertical-LR jobs run through real node processes, as curious parties keep them.

One network: the bank (labels + 3 columns), a narrow feature node (5 columns) and a wide one (300
columns), every node a real process started through `curious_node` (it records what its role holds
in the clear), the coordinator in this process behind a wire tap (so the arbiter's view is read off
the wire). Two jobs: `narrow` (bank + narrow node, batch 64, 12 epochs) and `wide` (bank + wide
node, batch 256, 2 epochs).
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.uscc import generate_uscc
from crypto.masks import DEFAULT_MASK_BOUND
from fedcredit.launcher import LocalNetwork, PartySpec
from proto.fedcredit.v1 import common_pb2, coordinator_pb2, node_pb2
from tests.attacks.curious_node import OUT_ENV
from tests.integration.conftest import tapped_network, write_table
from tests.integration.wiretap import WireTap

BANK_ROWS = 640
NARROW, WIDE = 5, 300
EPOCHS = {"narrow": 12, "wide": 2}
BATCH = {"narrow": 64, "wide": 256}


@dataclass(frozen=True)
class GradientView:
    """What a feature node holds after one batch: the positions it was sent, its weights during
    the batch, and its plaintext gradient X_B^T d (a sum over the batch rows)."""

    epoch: int
    batch: int
    positions: np.ndarray
    weights: np.ndarray
    gradient: np.ndarray
    answer: np.ndarray  # g + r as the arbiter decrypted it


@dataclass(frozen=True)
class FeatureView:
    design: np.ndarray  # the node's own (standardised) columns, by training position
    validation: np.ndarray
    batches: list[GradientView]  # in the order they ran


@dataclass(frozen=True)
class BankView:
    validation: np.ndarray  # positions of the validation rows
    sums: np.ndarray  # (epochs, validation rows): decrypted Σ_F u_F per epoch


@dataclass(frozen=True)
class Truth:
    labels: np.ndarray  # by training position
    train: np.ndarray


@dataclass(frozen=True)
class JobTranscript:
    feature: FeatureView
    bank: BankView
    truth: Truth
    arbiter: list[np.ndarray]  # every answer the arbiter decrypted (g + r), from the wire
    mask_bound: float


def make_tables(folder: Path, seed: int = 11) -> list[PartySpec]:
    """The bank's 640 enterprises, each also held (with 100 others) by both feature nodes."""
    rng = np.random.default_rng(seed)
    everyone = generate_uscc(rng, BANK_ROWS + 100)
    bank_ids = everyone[:BANK_ROWS]
    folder.mkdir(parents=True, exist_ok=True)
    narrow = rng.normal(size=(len(everyone), NARROW))
    wide = rng.normal(size=(len(everyone), WIDE))
    own = rng.normal(size=(BANK_ROWS, 3))
    logit = -1.0 + narrow[:BANK_ROWS] @ rng.normal(scale=0.6, size=NARROW) + own @ [0.5, -0.4, 0.3]
    labels = (rng.random(BANK_ROWS) < 1 / (1 + np.exp(-logit))).astype(float)
    columns = {f"own{j}": own[:, j] for j in range(3)} | {"default": labels}
    write_table(folder / "bank.csv", bank_ids, columns)
    write_table(folder / "narrow.csv", everyone, {f"n{j}": narrow[:, j] for j in range(NARROW)})
    write_table(folder / "wide.csv", everyone, {f"w{j}": wide[:, j] for j in range(WIDE)})
    specs = []
    for name in ("bank", "narrow", "wide"):
        data = {"source": "csv", "path": str(folder / f"{name}.csv"), "id_column": "id"}
        if name == "bank":
            data["label_column"] = "default"
        specs.append(PartySpec(name=name, role="label" if name == "bank" else "feature",
                               data=data))
    return specs


def curious_python(folder: Path, out: Path) -> str:
    """An executable standing in for `python -m fedcredit.cli.main`: the same node, curious."""
    script = folder / "curious-python"
    script.write_text(f"#!/bin/sh\nshift 2\n{OUT_ENV}='{out}' exec '{sys.executable}' "
                      f"-m tests.attacks.curious_node \"$@\"\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def _train(net: LocalNetwork, job: str, feature: str) -> None:
    stub = net.stub()
    vlr = {"batch_size": BATCH[job], "min_batch": 64, "max_epochs": EPOCHS[job],
           "patience": EPOCHS[job], "validation_fraction": 0.25, "learning_rate": 0.3}
    settings = {"label": "bank", "features": [feature], "align_job": "al", "vlr": vlr}
    stub.Train(coordinator_pb2.TrainRequest(algorithm="vlr", config_json=json.dumps(settings),
                                            job_id=job), timeout=60)
    deadline = time.monotonic() + 600
    while (state := stub.GetJob(coordinator_pb2.GetJobRequest(job_id=job),
                                timeout=30)).state == "running":
        assert time.monotonic() < deadline, f"job {job} still running"
        time.sleep(0.3)
    assert state.state == "done", state.error


def _arbiter_answers(tap: WireTap, party: str) -> list[np.ndarray]:
    """The values the arbiter decrypted for `party` (one job per feature node), read off the wire
    with their chunks joined."""
    answers, chunks = [], []
    for method, _, message in tap.messages:
        if not (method.endswith("RunStep") and isinstance(message, common_pb2.StepMessage)
                and message.HasField("part")):
            continue
        part = message.part
        if part.name == "decrypted" and part.recipient == party:
            chunks.append(part.data)
            if part.last:
                answers.append(np.frombuffer(b"".join(chunks), dtype="<f8").copy())
                chunks = []
    return answers


def load_job(out: Path, tap: WireTap, job: str, party: str, mask_bound: float) -> JobTranscript:
    opened = np.load(out / f"{job}.{party}.open.npz")
    grads = []
    for path in out.glob(f"{job}.{party}.grad.*.npz"):
        epoch, batch = (int(p) for p in path.name.split(".")[3:5])
        z = np.load(path)
        grads.append(GradientView(epoch, batch, z["positions"], z["weights"], z["gradient"],
                                  z["answer"]))
    grads.sort(key=lambda g: (g.epoch, g.batch))
    epochs = sorted(int(p.name.split(".")[3]) for p in out.glob(f"{job}.bank.validation.*.npz"))
    vals = [np.load(out / f"{job}.bank.validation.{e}.npz") for e in epochs]
    truth = np.load(out / f"{job}.bank.open.npz")
    return JobTranscript(
        feature=FeatureView(opened["design"], opened["validation"], grads),
        bank=BankView(vals[0]["validation"], np.stack([v["sums"] for v in vals])),
        truth=Truth(truth["labels"], truth["train"]),
        arbiter=_arbiter_answers(tap, party), mask_bound=mask_bound)


def capture(root: Path) -> dict[str, JobTranscript]:
    """Run both jobs through real processes; each job's transcript as its curious parties keep."""

    specs = make_tables(root / "data")
    out = root / "curious"
    with tapped_network(root, specs, python=curious_python(root, out)) as (net, tap):
        net.stub().Align(coordinator_pb2.AlignRequest(
            label_party="bank", mode=node_pb2.PSI_MODE_FULL, job_id="al"), timeout=300)
        for job in ("narrow", "wide"):
            _train(net, job, job)
        return {job: load_job(out, tap, job, job, DEFAULT_MASK_BOUND) for job in EPOCHS}


if __name__ == "__main__":  # a manual run: python -m tests.attacks.vlr_transcript <folder>
    found = capture(Path(sys.argv[1]))
    for name, t in found.items():
        print(name, t.feature.design.shape, len(t.feature.batches), t.bank.sums.shape,
              len(t.arbiter), os.getpid())

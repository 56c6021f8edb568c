"""The bank's decisions through real processes: applicants without labels, the decision service."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fedcredit.demo.parties import party_specs
from fedcredit.evaluate import load_party_tables, plaintext_probabilities
from fedcredit.launcher import LocalNetwork
from fedcredit.synth import synthesize
from node.alignment import AlignmentStore
from node.config import load_node_config
from node.datasource import NodeTable
from node.policy import CreditPolicy
from node.scoring.bank import BankScorer
from proto.fedcredit.v1 import coordinator_pb2

APPLICANTS = 150


@dataclass
class Bank:
    net: LocalNetwork
    tables: dict[str, NodeTable]
    applicants: list[str]  # the bank's rows with an empty label


def _blank_labels(path: Path, label: str, count: int) -> list[str]:
    """Empty the label of the last `count` rows of a CSV; their ids."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0])
    for row in rows[-count:]:
        row[label] = ""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return [row["id"] for row in rows[-count:]]


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bank]:
    root = tmp_path_factory.mktemp("decisions")
    synth = synthesize(root / "data", enterprises=1500, seed=5)
    part = synth.parties["bank"]
    applicants = _blank_labels(Path(part.path), part.label_column or "default", APPLICANTS)
    specs = party_specs(synth)
    net = LocalNetwork(root, specs)
    with net:
        net.start(timeout=120)
        stub = net.stub()
        stub.Align(coordinator_pb2.AlignRequest(label_party="bank", job_id="al"), timeout=300)
        stub.Train(coordinator_pb2.TrainRequest(algorithm="vlr", config_json=json.dumps(
            {"label": "bank", "features": ["core", "logistics", "tax"], "align_job": "al",
             "vlr": {"batch_size": 256, "max_epochs": 2}}), job_id="tr"), timeout=60)
        while (job := stub.GetJob(coordinator_pb2.GetJobRequest(job_id="tr"),
                                  timeout=30)).state == "running":
            time.sleep(0.3)
        assert job.state == "done", job
        tables = load_party_tables({s.name: s.data for s in specs}, "bank")
        yield Bank(net=net, tables=tables, applicants=applicants)


def test_unlabelled_rows_are_counted_and_never_aligned_or_trained_on(bank: Bank) -> None:
    table = bank.tables["bank"]
    assert table.unlabelled_rows == APPLICANTS
    listed = {n.party: n for n in bank.net.stub().ListNodes(
        coordinator_pb2.ListNodesRequest(), timeout=30).nodes}
    assert listed["bank"].rows == table.rows
    assert listed["bank"].schema.unlabelled_rows == APPLICANTS
    order = AlignmentStore(bank.net.workdir / "state" / "bank").load_order("al")
    assert len(order) == table.rows - APPLICANTS  # training positions cover labelled rows only
    log = (bank.net.workdir / "state" / "bank" / "audit.jsonl").read_text().splitlines()
    opened = [json.loads(line) for line in log if '"train.open"' in line]
    assert opened and opened[-1]["rows"] == table.rows - APPLICANTS


def test_applicants_without_a_label_are_scored_like_the_plaintext_model(bank: Bank) -> None:
    scorer = BankScorer(load_node_config(bank.net.config_path("bank")), CreditPolicy())
    try:
        decisions = scorer.score(bank.applicants[:60], consent="consent-applicants")
    finally:
        scorer.close()
    expected = plaintext_probabilities(bank.net.workdir / "state", bank.tables, "tr",
                                       bank.applicants[:60])
    got = np.asarray([d.probability for d in decisions])
    assert np.abs(got - expected).max() < 1e-4
    assert all(d.reasons != ("no history at this bank",) for d in decisions)  # rows of ours

"""The WOE scorecard through real processes on give_credit: binning → scorecard → decisions.

Parity: the federated scorecard against the pooled one trained by the same plaintext training
on the same bins (AUC within 0.005, points per bin equal within rounding), with scikit-learn's
unregularised LR on the pooled WOE columns as the modellers' reference; then scoring it through
the bank's decision service: the score is the sum of every party's points, with reason codes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedcredit.evaluate import load_party_tables
from fedcredit.launcher import LocalNetwork
from fedcredit.scorecard_twin import compare_scorecard, max_points_difference
from models.scorecard import JOINT, MAX_REASONS, ScorecardConfig
from models.scorecard.points import PartyCard
from proto.fedcredit.v1 import coordinator_pb2
from tests.integration.conftest import run_job
from tests.integration.decision_http import call
from tests.integration.give_credit import GUEST, HOST, give_credit_specs

CARD = {"learning_rate": 0.5, "batch_size": 4096, "max_epochs": 8, "patience": 20,
        "validation_fraction": 0.2, "seed": 0}


@dataclass
class Trained:
    net: LocalNetwork
    job: coordinator_pb2.JobStatus
    config: ScorecardConfig
    guest: np.ndarray  # id, y, x0..x4
    host: np.ndarray  # id, x0..x4


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    specs = give_credit_specs()
    with LocalNetwork(tmp_path_factory.mktemp("scorecard"), specs) as net:
        net.start(timeout=120)
        stub = net.stub()
        stub.Align(coordinator_pb2.AlignRequest(label_party="bank", job_id="al"), timeout=600)
        binning = run_job(stub, "gc-bin", "binning", {"method": "optimal", "bins": 20})
        assert binning.state == "done", binning.error
        iv_table = json.loads(binning.metrics_json)["history"][-1]["iv_table"]
        chosen = [f"{r['party']}:{r['name']}" for r in iv_table if r["selected"]]
        card = run_job(stub, "gc-card", "scorecard",  # no characteristics: the selected ones
                    {**CARD, "binning_job": "gc-bin"})
        assert card.state == "done", card.error
        yield Trained(net, card, ScorecardConfig(**CARD, binning_job="gc-bin",
                                                 characteristics=chosen),
                      np.loadtxt(GUEST, delimiter=",", skiprows=1),
                      np.loadtxt(HOST, delimiter=",", skiprows=1))


def _cards(t: Trained) -> dict[str, tuple[PartyCard, dict[str, Any]]]:
    state = t.net.workdir / "state"
    return {p: PartyCard.from_json((state / p / "models" / "gc-card" / "scorecard.json")
                                   .read_text()) for p in ("bank", "host")}


def _index(names: tuple[str, ...]) -> list[int]:
    return [int(n[1:]) for n in names]


def test_federated_scorecard_equals_the_pooled_one(trained: Trained) -> None:
    t, cards = trained, _cards(trained)
    state = t.net.workdir / "state"
    bank, host = cards["bank"][0], cards["host"][0]
    assert bank.names == tuple(t.config.of("bank")) and host.names == tuple(t.config.of("host"))
    tables = load_party_tables({p.name: p.data for p in t.net.parties}, "bank")
    pooled = compare_scorecard(state, tables, "bank", "al", t.config)
    worst = max_points_difference(state, "gc-card", pooled)
    federated = json.loads(t.job.metrics_json)["history"][-1]["auc"]
    print(f"give_credit scorecard: AUC federated {federated:.4f}, pooled twin "
          f"{pooled.auc:.4f}, scikit-learn unregularised {pooled.sklearn_auc:.4f}; "
          f"max |points difference| per bin (and base) {worst:.3g}")
    assert abs(federated - pooled.auc) <= 0.005
    assert worst < 0.5  # equal within rounding to whole points
    assert abs(pooled.auc - pooled.sklearn_auc) <= 0.015
    ranges = cards["bank"][1]["feature_points"]["host"]
    assert ranges == pytest.approx(dict(zip(("min", "max"), host.total_range(), strict=True)))
    assert "feature_points" not in cards["host"][1]  # the bank's metadata stays at the bank
    assert set(cards["bank"][1]) >= {"points", "base_points", "metrics"}


def test_the_decision_service_scores_the_scorecard_with_reason_codes(trained: Trained) -> None:
    from fedcredit.bench.decide_load import decision_service

    t, cards = trained, _cards(trained)
    bank, host = cards["bank"][0], cards["host"][0]
    expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat()
    seen: set[str] = set()
    with decision_service(t.net, "bank") as url:
        for row in (0, 7, 41, 300, 1234):
            ident = str(int(t.guest[row, 0]))
            status, out = call(url + "/v1/decisions", {
                "enterprise_id": ident, "consent": {"reference": "SC-1", "expires_at": expiry}})
            assert status == 201, out
            assert out["model"]["algorithm"] == "scorecard"
            own = t.guest[row:row + 1, 2:][:, _index(bank.names)]
            theirs = t.host[row:row + 1, 1:][:, _index(host.names)]
            points = bank.base_points + bank.points(own).sum() + host.points(theirs).sum()
            assert abs(out["score"] - points) < 0.01, (out["score"], points)
            names = set(bank.names) | {JOINT}
            assert len(out["reason_codes"]) <= MAX_REASONS
            assert set(out["reason_codes"]) <= names
            seen |= set(out["reason_codes"])
    assert seen  # some enterprise lost points somewhere


def test_the_model_report_shows_the_banks_own_points_tables(trained: Trained,
                                                            tmp_path: Path) -> None:
    from fedcredit.report.bank import ReportRequest, bank_report, write_report
    from node.config import load_node_config
    from node.policy import CreditPolicy, ScoreScale
    from node.scoring.bank import BankScorer

    t, cards = trained, _cards(trained)
    policy = CreditPolicy(scale=ScoreScale(base_points=500, base_odds=20,
                                           points_to_double_odds=40))
    scorer = BankScorer(load_node_config(t.net.config_path("bank")), policy)
    try:
        report = bank_report(scorer, ReportRequest(consent="SC-report"))
    finally:
        scorer.close()
    write_report(report, tmp_path / "r.json", tmp_path / "r.html")
    section = report["scorecard"]
    bank = cards["bank"][0]
    assert [p["characteristic"] for p in section["points"]] == list(bank.names)
    assert section["factor"] == pytest.approx(40 / np.log(2))  # the policy's scale, not the job's
    ratio = section["factor"] / bank.factor
    first = section["points"][0]["bins"][0]["points"]
    assert first == pytest.approx(bank.tables()[0]["bins"][0]["points"] * ratio)
    assert set(section["feature_nodes"]) == {"host"} and section["iv_table"]
    assert abs(report["auc"] - json.loads(t.job.metrics_json)["history"][-1]["auc"]) < 2e-3
    page = (tmp_path / "r.html").read_text()
    assert "Scorecard (points" in page and bank.names[0] in page
    assert set(section["feature_nodes"]["host"]) == {"min_points", "max_points"}  # no bins
    labels = {r["bin"] for p in section["points"] for r in p["bins"]}
    assert labels.isdisjoint(r["bin"] for p in cards["host"][0].tables() for r in p["bins"]
                             if r["bin"].startswith("["))  # never the host's edges

"""Portfolio monitoring: tiers, dynamic lines, re-credit, PSI bands, a review end to end."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from node.policy import CreditPolicy, Monitoring
from node.portfolio.monitor import NO_TIER, Before, review, tiers
from node.portfolio.review import rescore
from node.portfolio.store import Account, PortfolioStore
from node.scoring.data_alerts import DataAlertLevels
from node.scoring.outcome import Decision
from node.stability import band, psi


def _before(n: int, pd: float = 0.03, grade: int = 1, line: float = 1e6, drawn: float = 2e5,
            days: float = 200) -> Before:
    return Before(pd=np.full(n, pd), grade=np.full(n, grade), line=np.full(n, line),
                  drawn=np.full(n, drawn), days_left=np.full(n, days))


def test_tiers_take_the_worst_criterion() -> None:
    m = Monitoring()
    pd = np.array([0.03, 0.07, 0.13, 0.25, 0.5, 0.04])
    grade = np.array([1, 1, 1, 1, 1, 4])  # the last lost three grades
    got = tiers(m, _before(6), pd, grade)
    assert got.tolist() == [NO_TIER, 0, 1, 2, 2, 2]


def test_lines_cut_for_severe_raise_for_improving_never_below_drawn() -> None:
    m = Monitoring(max_raise=0.5)
    before = _before(4, days=10)
    pd = np.array([0.3, 0.08, 0.01, 0.03])
    grade = np.array([3, 2, 0, 1])
    target = np.array([0.0, 3e5, 5e6, 1e6])
    out = review(m, before, pd, grade, target)
    assert out.line.tolist() == [2e5, 1e6, 1.5e6, 1e6]  # cut to drawn, frozen only, +50%, hold
    assert out.change.tolist() == ["cut", "hold", "raise", "hold"]
    assert out.recredit.tolist() == [False, True, True, True]
    assert out.lapse.tolist() == [True, False, False, False]


def test_psi_bands() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(600, 30, 20000)
    assert band(psi(base, rng.normal(600, 30, 20000))) == "stable"
    assert band(psi(base, rng.normal(612, 30, 20000))) == "watch"
    assert band(psi(base, rng.normal(630, 30, 20000))) == "shifted"
    assert band(psi(base, np.array([]))) == "n/a"


class FakeScorer:
    def __init__(self, pds: dict[str, float]) -> None:
        self.policy = CreditPolicy()
        self.pds = pds

    def score(self, ids: list[str], consent: str, purpose: str = "") -> list[Decision]:
        pd = np.array([self.pds[i] for i in ids])
        s = self.policy.scores(pd)
        g = self.policy.grade_index(s)
        lines = self.policy.lines(g, np.full(len(ids), 6.0))
        return [Decision(id=i, probability=float(pd[k]), score=float(s[k]),
                         grade=self.policy.grades[g[k]].grade, credit_line=float(lines[k]),
                         parties_covering=3, reasons=()) for k, i in enumerate(ids)]


def test_review_end_to_end(tmp_path: Path) -> None:
    store = PortfolioStore(tmp_path / "p.sqlite")
    policy = CreditPolicy()
    pd0 = np.array([0.03, 0.03, 0.03, 0.08])
    s0 = policy.scores(pd0)
    grades = [policy.grades[k].grade for k in policy.grade_index(s0)]
    store.book([Account(enterprise_id=f"e{k}", line=1e6, drawn=1e5, grade=grades[k],
                        pd=float(pd0[k]), score=float(s0[k]), booked_at="2026-01-01",
                        expiry="2026-12-01" if k else "2026-11-30") for k in range(4)])
    scorer = FakeScorer({"e0": 0.03, "e1": 0.4, "e2": 0.14, "e3": 0.01})
    jsonl = tmp_path / "alerts.jsonl"
    summary = rescore(scorer, store, consent="c", now=dt.datetime(2026, 11, 15, tzinfo=dt.UTC),
                      alerts_jsonl=jsonl)
    assert summary["alerts"] == {"yellow": 0, "orange": 1, "red": 1}
    assert summary["lines_cut"] == 2 and summary["lines_raised"] == 1
    assert summary["recredited"] == 2 and summary["lapsing"] == 2
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert sorted(a["enterprise_id"] for a in lines) == ["e1", "e2"]
    assert {a["action"] for a in lines} == {"cut_line", "call_margin"}
    assert store.alerts(review_id=summary["review_id"]) == lines
    accounts = {a["enterprise_id"]: a for a in store.accounts()}
    assert accounts["e1"]["line"] == 1e5 and accounts["e1"]["frozen"] == 1
    assert accounts["e0"]["expiry"].startswith("2027-11-15")


def test_a_review_adds_the_feature_nodes_data_alerts(tmp_path: Path) -> None:
    store = PortfolioStore(tmp_path / "p.sqlite")
    policy = CreditPolicy()
    s0 = policy.scores(np.full(4, 0.03))
    grade = policy.grades[int(policy.grade_index(s0)[0])].grade
    store.book([Account(enterprise_id=f"e{k}", line=1e6, drawn=1e5, grade=grade, pd=0.03,
                        score=float(s0[k]), booked_at="2026-01-01", expiry="2027-06-01")
                for k in range(4)])
    asked: list[tuple[list[str], str]] = []

    def data_alerts(ids: Sequence[str], consent: str) -> DataAlertLevels:
        asked.append((list(ids), consent))
        return DataAlertLevels(ids=list(ids), level_sum=np.asarray([0, 1, 5, -1]),
                               refused=np.asarray([False, False, False, True]),
                               snapshots=(("core", "v2-abc"),),
                               stability={"core": {"reference": "v1-x", "current": "v2-abc",
                                                   "features": {"orders": {"psi": 0.3,
                                                                           "band": "shifted"}}}})

    jsonl = tmp_path / "alerts.jsonl"
    scorer = FakeScorer({f"e{k}": 0.03 for k in range(4)})
    summary = rescore(scorer, store, consent="c", now=dt.datetime(2026, 11, 15, tzinfo=dt.UTC),
                      alerts_jsonl=jsonl, data_alerts=data_alerts)
    assert asked == [(["e0", "e1", "e2", "e3"], "c")]
    # the data levels reach the default tiers: yellow -> yellow, red (a sum of 5) -> red
    assert summary["alerts"] == {"yellow": 1, "orange": 0, "red": 1}
    assert summary["alert_sources"] == {"score": 0, "data": 2, "both": 0}
    assert summary["data_alerts"] == {"yellow": 1, "orange": 0, "red": 1}
    assert summary["data_alerts_refused"] == 1
    assert summary["feature_psi"]["core"]["features"]["orders"]["band"] == "shifted"
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    key = lambda a: (a["type"], a["enterprise_id"])  # noqa: E731
    assert sorted(lines, key=key) == sorted(store.alerts(review_id=summary["review_id"]), key=key)
    assert [(a["enterprise_id"], a["type"], a["tier"], a["action"], a["source"])
            for a in lines if a["type"] == "early_warning"] == [
        ("e1", "early_warning", "yellow", "freeze_drawdowns", "data"),
        ("e2", "early_warning", "red", "call_margin", "data")]
    assert [(a["enterprise_id"], a["type"], a["level"], a["level_sum"], a["source"])
            for a in lines if a["type"] == "data_warning"] == [
        ("e1", "data_warning", "yellow", 1, "feature data"),
        ("e2", "data_warning", "red", 5, "feature data")]
    assert summary["lines_cut"] == summary["lines_cut_by_data"] == 1  # e2, from cut_on up
    assert summary["frozen"] == summary["frozen_by_data"] == 2
    accounts = {a["enterprise_id"]: a for a in store.accounts()}
    assert accounts["e2"]["line"] < 1e6 and accounts["e1"]["line"] == 1e6
    assert accounts["e1"]["frozen"] == accounts["e2"]["frozen"] == 1
    assert accounts["e0"]["frozen"] == accounts["e3"]["frozen"] == 0  # e3 refused: no level


class RefusingScorer(FakeScorer):
    """Refuses to score `refused` (as a node's daily budget would)."""

    def __init__(self, pds: dict[str, float], refused: set[str]) -> None:
        super().__init__(pds)
        self.refused = refused

    def score(self, ids: list[str], consent: str, purpose: str = "") -> list[Decision]:
        return [Decision(id=d.id, probability=float("nan"), score=None, grade=None,
                         credit_line=None, parties_covering=0, reasons=(), outcome="refused")
                if d.id in self.refused else d for d in super().score(ids, consent, purpose)]


def test_an_ungraded_accounts_data_alert_freezes_it_and_keeps_its_line(tmp_path: Path) -> None:
    store = PortfolioStore(tmp_path / "p.sqlite")
    s0 = CreditPolicy().scores(np.full(2, 0.03))
    store.book([Account(enterprise_id=f"e{k}", line=1e6, drawn=1e5, grade="B", pd=0.03,
                        score=float(s0[k]), booked_at="2026-01-01", expiry="2027-06-01")
                for k in range(2)])

    def data_alerts(ids: Sequence[str], consent: str) -> DataAlertLevels:
        return DataAlertLevels(ids=list(ids), level_sum=np.asarray([3, 2]),
                               refused=np.zeros(2, dtype=bool))

    jsonl = tmp_path / "alerts.jsonl"
    summary = rescore(RefusingScorer({"e0": 0.03, "e1": 0.03}, {"e0"}), store, consent="c",
                      now=dt.datetime(2026, 11, 15, tzinfo=dt.UTC), alerts_jsonl=jsonl,
                      data_alerts=data_alerts)
    warned = {a["enterprise_id"]: a for a in map(json.loads, jsonl.read_text().splitlines())
              if a["type"] == "early_warning"}
    assert (warned["e0"]["tier"], warned["e0"]["source"], warned["e0"]["pd"]) == (
        "red", "data", None)  # valid JSON: no NaN
    assert warned["e1"]["tier"] == "orange" and warned["e1"]["line"] == 1e5  # cut to drawn
    accounts = {a["enterprise_id"]: a for a in store.accounts()}
    assert accounts["e0"]["frozen"] == 1 and accounts["e0"]["line"] == 1e6  # no new grade
    assert summary["unscored"] == 1 and summary["lines_cut_by_data"] == 1

"""A portfolio review: re-score every account through the batch path, then early warning,
dynamic lines, re-credit and score stability; alerts also as JSON lines for the bank's systems.

With `data_alerts` (the bank's request to the feature nodes, `node.scoring.data_alerts`) the
review also asks every feature node for its early-warning level of each account: an account
whose aggregate level is above none gets an alert of type "data_warning" (source "feature
data", its level and the sum it was read from, naming no node), beside the score alerts of type
"early_warning"; the summary counts them and carries each node's per-feature PSI and the
request's seconds (`data_alerts_seconds`). The
aggregate level also reaches the policy's monitoring tiers (each tier's `data_level`): the
worse of the score's tier and the data's decides the action (freeze, cut, no re-credit), and
each early-warning alert and line change says its source ("score", "data", "both"; for a
cut: which of the two reached the `cut_on` tier). An account the network
could not grade keeps its line, but its data alert still freezes its drawdowns.

Times are UTC ISO strings without offset (`YYYY-MM-DDTHH:MM:SS`); expiry may be a date.
An account the network could not grade this time (refer, refused) keeps its line and grade and
is counted as unscored.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from node.monitoring.limits import LEVELS
from node.policy import CreditPolicy
from node.portfolio.monitor import NO_TIER, Before, review, source
from node.portfolio.store import PortfolioStore
from node.scoring.data_alerts import SOURCE, DataAlertLevels
from node.scoring.outcome import Decision
from node.stability import band, psi


class Scorer(Protocol):
    """What a review needs of the bank's scorer (node.scoring.bank.BankScorer)."""

    policy: CreditPolicy

    def score(self, ids: list[str], consent: str, purpose: str = ...) -> list[Decision]: ...


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def _days_left(expiry: list[str], now: dt.datetime) -> np.ndarray:
    ends = np.asarray(expiry, dtype="datetime64[s]")
    start = np.datetime64(iso(now), "s")
    days: np.ndarray = (ends - start).astype(np.int64) / 86400.0
    return days


DataAlertSource = Callable[[Sequence[str], str], DataAlertLevels]
"""(ids, consent reference) -> the feature nodes' aggregate levels."""


def data_warnings(found: DataAlertLevels, review_id: str, at: str,
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The data alerts of one review, and their counts and the nodes' PSI for its summary."""
    raised = [k for k in range(len(found.ids)) if not found.refused[k] and found.level_sum[k] > 0]
    alerts = [{"type": "data_warning", "review_id": review_id, "at": at,
               "enterprise_id": found.ids[k], "level": found.level(k),
               "level_sum": int(found.level_sum[k]), "source": SOURCE} for k in raised]
    counts = {name: sum(a["level"] == name for a in alerts) for name in LEVELS[1:]}
    return alerts, {"data_alerts": counts, "data_alerts_refused": int(found.refused.sum()),
                    "feature_psi": found.stability,
                    "feature_snapshots": dict(found.snapshots)}


def _levels_of(found: DataAlertLevels, ids: list[str]) -> np.ndarray:
    """Each account's aggregate data level (-1: refused or not answered), in `ids`' order."""
    if found.ids == ids:
        return found.level_sum
    index = {i: k for k, i in enumerate(found.ids)}
    at = np.fromiter((index.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
    out: np.ndarray = np.where(at >= 0, found.level_sum[np.where(at >= 0, at, 0)], -1)
    return out


def rescore(scorer: Scorer, store: PortfolioStore, *, consent: str,
            now: dt.datetime | None = None, alerts_jsonl: Path | None = None,
            data_alerts: DataAlertSource | None = None) -> dict[str, Any]:
    """Review the whole portfolio once; the summary (counts, PSI, seconds) is also stored."""
    now = now or dt.datetime.now(dt.UTC)
    at, review_id = iso(now), f"review-{uuid.uuid4().hex[:12]}"
    started = time.perf_counter()
    col = store.columns()
    ids = col["enterprise_id"]
    if not ids:
        return {"review_id": review_id, "at": at, "accounts": 0}
    policy = scorer.policy
    grades = [g.grade for g in policy.grades]
    index_of = {g: k for k, g in enumerate(grades)}
    decisions = scorer.score(ids, consent, purpose="portfolio review")
    scored_at = time.perf_counter()
    decided = np.asarray([d.outcome == "decided" for d in decisions])
    before = Before(pd=np.asarray([np.nan if p is None else p for p in col["pd"]], dtype=float),
                    grade=np.asarray([index_of.get(g, len(grades) - 1) for g in col["grade"]]),
                    line=np.asarray(col["line"], dtype=float),
                    drawn=np.asarray(col["drawn"], dtype=float),
                    days_left=_days_left(col["expiry"], now))
    pd = np.where(decided, [d.probability for d in decisions], np.nan)
    grade = np.where(decided, [index_of.get(d.grade or "", 0) for d in decisions], before.grade)
    target = np.where(decided, [d.credit_line or 0.0 for d in decisions], before.line)
    extra: dict[str, Any] = {}
    level = None
    if data_alerts is not None:
        asked_at = time.perf_counter()
        found = data_alerts(ids, consent)
        level = _levels_of(found, ids)
        extra["data_alerts_seconds"] = round(time.perf_counter() - asked_at, 3)
    out = review(policy.monitoring, before, pd, grade, target, level)
    line = np.where(decided, out.line, before.line)
    tier = out.tier  # an ungraded account's is its data's
    why = source(out.score_tier, out.data_tier)
    renew = out.recredit & decided
    term = dt.timedelta(days=policy.monitoring.term_days)
    new_expiry = iso(now + term)
    score = [d.score if d.outcome == "decided" else s for d, s in zip(decisions, col["score"],
                                                                      strict=True)]
    tiers = policy.monitoring.tiers
    severe_from = [t.tier for t in tiers].index(policy.monitoring.cut_on)
    was_frozen = np.asarray(col["frozen"], dtype=bool)
    frozen = np.where(decided, tier >= 0, was_frozen | (tier >= 0))
    updates = list(zip(  # columns as Python values, then one tuple per account
        line.tolist(), [grades[g] for g in grade.astype(int).tolist()],
        [None if math.isnan(v) else v for v in pd.tolist()], score,
        frozen.astype(int).tolist(),
        [new_expiry if r else e for r, e in zip(renew.tolist(), col["expiry"], strict=True)],
        [at] * len(ids), ids, strict=True))
    flagged = np.flatnonzero(tier >= 0)
    alerts = [{"type": "early_warning", "review_id": review_id, "at": at,
               "enterprise_id": ids[k], "tier": tiers[tier[k]].tier,
               "action": tiers[tier[k]].action, "source": str(why[k]),
               "pd": None if np.isnan(pd[k]) else round(float(pd[k]), 6),
               "pd_before": None if np.isnan(before.pd[k]) else round(float(before.pd[k]), 6),
               "grade": grades[int(grade[k])], "grade_before": grades[int(before.grade[k])],
               "line": float(line[k]), "line_before": float(before.line[k])}
              for k in flagged]
    moved = np.flatnonzero(decided & (out.change != "hold"))
    cut_by = source(np.where(out.score_tier >= severe_from, out.score_tier, NO_TIER),
                    np.where(out.data_tier >= severe_from, out.data_tier, NO_TIER))
    moved_by = np.where(out.change == "cut", cut_by, "score")  # a raise: the grade improved
    changes = [{"enterprise_id": ids[k], "review_id": review_id, "change": str(out.change[k]),
               "source": str(moved_by[k]),
                "line_before": float(before.line[k]), "line": float(line[k]),
                "grade_before": grades[int(before.grade[k])], "grade": grades[int(grade[k])]}
               for k in moved]
    booked = np.asarray([np.nan if s is None else s for s in
                         col["booked_score"]], dtype=float)
    now_scores = np.asarray([np.nan if s is None else s for s in score], dtype=float)
    stability = psi(booked, now_scores)
    if data_alerts is not None:
        more, counts = data_warnings(found, review_id, at)
        extra.update(counts)
        alerts = alerts + more
    summary = {
        "review_id": review_id, "at": at, "accounts": len(ids),
        "scored": int(decided.sum()), "unscored": int((~decided).sum()),
        "alerts": {t.tier: int((tier == k).sum()) for k, t in enumerate(tiers)},
        "frozen": int(frozen.sum()),
        "lines_cut": int((line < before.line).sum()),
        "lines_raised": int((line > before.line).sum()),
        "cut_from_tier": tiers[severe_from].tier,
        "alert_sources": {name: int((why == name).sum()) for name in ("score", "data", "both")},
        "frozen_by_data": int((frozen & (out.score_tier < 0) & (out.data_tier >= 0)).sum()),
        "lines_cut_by_data": int(((line < before.line) & (moved_by == "data")).sum()),
        "line_total_before": float(before.line.sum()), "line_total": float(line.sum()),
        "recredited": int(renew.sum()), "lapsing": int((out.lapse & decided).sum()),
        "score_psi": None if np.isnan(stability) else round(stability, 4),
        "score_psi_band": band(stability),
        "scoring_seconds": round(scored_at - started, 3),
        **extra,
    }
    store.record_review(review_id, at, summary, updates, alerts, changes)
    if alerts_jsonl is not None and alerts:
        alerts_jsonl.parent.mkdir(parents=True, exist_ok=True)
        with alerts_jsonl.open("a", encoding="utf-8") as f:
            f.writelines(json.dumps(a) + "\n" for a in alerts)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary

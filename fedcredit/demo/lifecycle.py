"""The demo's credit lifecycle: admission by strategy, a booked portfolio, a change in the
feature nodes' data, a review that raises early warnings and moves lines, and what the joint
model does for credit-white SMEs at the bank's current default rate.

The shift (`fedcredit.synth_shift`) rewrites the feature nodes' files; each node then re-reads
its table live (`fedcredit nodes reload`, the coordinator's ReloadNode), without a restart. The
review asks the feature nodes for their data-alert levels too (each node's own `[monitoring]`
limits against its reference snapshot, `fedcredit.demo.parties.MONITORING`): the report gives
their counts, the recall of the deteriorated SMEs from data alerts alone and together with the
score alerts, the share of healthy SMEs flagged, and each node's per-feature PSI. Data alerts
reach the policy's monitoring tiers too (`AlertTier.data_level`): the report also counts the
alerts by source and the drawdowns frozen and lines cut because of data alone.
"""

from __future__ import annotations

import csv
import datetime as dt
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from rich.console import Console

from common.errors import PeerUnavailable
from fedcredit.demo.parties import FEATURE_PARTIES, LABEL_PARTY
from fedcredit.evaluate import load_party_tables
from fedcredit.launcher import LocalNetwork
from fedcredit.synth import SynthResult
from fedcredit.synth_shift import shift_chain
from models.vlr import VlrConfig
from models.vlr.centralized import pooled_design, train_centralized
from node.config import load_node_config
from node.decisions.admission import admit, own_facts
from node.policy import CreditPolicy, load_policy
from node.portfolio.review import iso, rescore
from node.portfolio.store import Account, PortfolioStore
from node.scoring.bank import BankScorer
from node.scoring.data_alerts import request_data_alerts

POLICY = Path(__file__).with_name("policy.toml")
DETERIORATE, IMPROVE = 0.08, 0.08  # shares of the booked portfolio


def run_lifecycle(net: LocalNetwork, synth: SynthResult, console: Console, *, model_id: str = "",
                  seed: int = 7, policy: CreditPolicy | None = None) -> dict[str, Any]:
    """Admit, book, shift the feature nodes' data, review; each step's counts."""
    policy = policy or load_policy(POLICY)
    tables = load_party_tables({p.name: p.data for p in net.parties}, LABEL_PARTY)
    with (synth.segments_path).open(newline="") as f:
        segments = {r["id"]: r for r in csv.DictReader(f)}
    applicants = sorted(segments)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    store = PortfolioStore(net.workdir / "state" / LABEL_PARTY / "portfolio" / "demo.sqlite")
    scorer = BankScorer(load_node_config(net.config_path(LABEL_PARTY)), policy,
                        model_id=model_id, table=tables[LABEL_PARTY])
    try:
        with console.status(f"admitting {len(applicants):,} applicants by strategy"):
            decisions = scorer.score(applicants, consent="demo-admission")
            verdict = admit(policy, decisions, own_facts(scorer, applicants))
        admitted = [k for k, o in enumerate(verdict.outcome)
                    if o == "approve" and decisions[k].outcome == "decided" and verdict.line[k] > 0]
        rng = np.random.default_rng(seed)
        days = rng.integers(10, 365, len(admitted))
        drawn = rng.uniform(0.1, 0.7, len(admitted))
        store.book([Account(enterprise_id=applicants[k], line=float(verdict.line[k]),
                            drawn=float(np.round(verdict.line[k] * drawn[j], -3)),
                            grade=decisions[k].grade or "E", pd=decisions[k].probability,
                            score=decisions[k].score, booked_at=iso(now),
                            expiry=iso(now + dt.timedelta(days=int(days[j]))))
                    for j, k in enumerate(admitted)])
        booked = [applicants[k] for k in admitted]
        admission = {
            "applicants": len(applicants),
            "outcomes": dict(Counter(o if decisions[k].outcome == "decided"
                                     else f"network_{decisions[k].outcome}"
                                     for k, o in enumerate(verdict.outcome))),
            "segments": dict(Counter(verdict.segment)),
            "rule_hits": dict(Counter(n for hit in verdict.rules_hit for n in hit)),
            "booked": len(booked), "booked_line_total": float(verdict.line[admitted].sum()),
            "strategy_version": policy.strategy.digest()}
        console.print(f"[bold]lifecycle[/]: {admission['outcomes']}; booked {len(booked):,}")
        shift = shift_chain(synth.out_dir, deteriorate=DETERIORATE, improve=IMPROVE,
                            seed=seed + 1, among=booked)
        with console.status("feature nodes re-reading their changed tables (live reload)"):
            reloads = net.reload_nodes(FEATURE_PARTIES)
        summary = _review(scorer, store, now + dt.timedelta(days=1),
                          net.workdir / "state" / LABEL_PARTY / "portfolio" / "alerts.jsonl")
        warning = _warning_figures(store, summary["review_id"], booked, shift.deteriorated,
                                   shift.improved)
        data = _data_figures(store, summary, booked, shift.deteriorated, shift.improved)
    finally:
        scorer.close()
        store.close()
    white = credit_white_share(net, tables, segments, applicants, decisions)
    console.print(f"  early warning: recall {warning['recall']:.2f} of deteriorated SMEs, "
                  f"{warning['healthy_flagged_share']:.1%} of healthy ones flagged; credit-white "
                  f"with a line: joint {white['joint_share']:.1%}, bank alone "
                  f"{white['bank_only_share']:.1%}")
    console.print(f"  data alerts: {data['counts']}; recall {data['recall']:.2f} alone, "
                  f"{data['combined_recall']:.2f} with score alerts; healthy flagged "
                  f"{data['healthy_flagged_share']:.1%} alone, "
                  f"{data['combined_healthy_flagged_share']:.1%} combined")
    return {"admission": admission,
            "data_change": {"deteriorated": len(shift.deteriorated),
                            "improved": len(shift.improved),
                            "parties_restarted": [], "parties_reloaded": reloads},
            "review": summary, "early_warning": warning, "credit_white": white,
            "data_alerts": data}


def _review(scorer: BankScorer, store: PortfolioStore, at: dt.datetime,
            jsonl: Path) -> dict[str, Any]:
    """One review, retried while the restarted nodes come back."""
    deadline = time.monotonic() + 90
    while True:
        try:
            return rescore(scorer, store, consent="demo-review", now=at, alerts_jsonl=jsonl,
                           data_alerts=lambda ids, ref: request_data_alerts(scorer, ids, ref))
        except (grpc.RpcError, PeerUnavailable):
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _warning_figures(store: PortfolioStore, review_id: str, booked: list[str],
                     deteriorated: list[str], improved: list[str]) -> dict[str, Any]:
    flagged = {a["enterprise_id"]: a["tier"] for a in store.alerts(review_id=review_id)
               if a.get("type", "early_warning") == "early_warning"}
    changes = {c["enterprise_id"]: c["change"] for c in store.line_changes(review_id=review_id)}
    bad, good = set(deteriorated), set(improved)
    healthy = [i for i in booked if i not in bad and i not in good]
    hit = [i for i in deteriorated if i in flagged]
    return {
        "deteriorated": len(bad), "flagged_deteriorated": len(hit),
        "recall": round(len(hit) / max(len(bad), 1), 4),
        "healthy": len(healthy),
        "flagged_healthy": sum(i in flagged for i in healthy),
        "healthy_flagged_share": round(sum(i in flagged for i in healthy) / max(len(healthy), 1),
                                       4),
        "tiers_deteriorated": dict(Counter(flagged[i] for i in hit)),
        "lines_cut_deteriorated": sum(changes.get(i) == "cut" for i in bad),
        "lines_raised_improved": sum(changes.get(i) == "raise" for i in good),
        "improved": len(good),
        "lines_raised_healthy": sum(changes.get(i) == "raise" for i in healthy),
        "lines_cut_healthy": sum(changes.get(i) == "cut" for i in healthy),
    }


def _data_figures(store: PortfolioStore, summary: dict[str, Any], booked: list[str],
                  deteriorated: list[str], improved: list[str]) -> dict[str, Any]:
    """Data alerts of the review: counts, recall alone and with score alerts, healthy flagged."""
    alerts = store.alerts(review_id=summary["review_id"])
    data = {a["enterprise_id"]: a["level"] for a in alerts if a.get("type") == "data_warning"}
    cut_by_data = {c["enterprise_id"] for c in store.line_changes(review_id=summary["review_id"])
                   if c["change"] == "cut" and c.get("source") == "data"}
    either = set(data) | {a["enterprise_id"] for a in alerts
                          if a.get("type", "early_warning") == "early_warning"}
    bad, good = set(deteriorated), set(improved)
    healthy = [i for i in booked if i not in bad and i not in good]

    def share(found: set[str] | dict[str, str], among: Any) -> float:
        return round(sum(i in found for i in among) / max(len(among), 1), 4)

    return {"counts": summary.get("data_alerts", {}),
            "flagged_deteriorated": sum(i in data for i in bad),
            "recall": share(data, bad), "healthy_flagged_share": share(data, healthy),
            "flagged_healthy": sum(i in data for i in healthy),
            "flagged_improved": sum(i in data for i in good),
            "levels_deteriorated": dict(Counter(data[i] for i in bad if i in data)),
            "combined_recall": share(either, bad),
            "combined_healthy_flagged_share": share(either, healthy),
            "refused": summary.get("data_alerts_refused", 0),
            "alert_sources": summary.get("alert_sources", {}),
            "frozen_by_data": summary.get("frozen_by_data", 0),
            "lines_cut_by_data": summary.get("lines_cut_by_data", 0),
            "lines_cut_by_data_deteriorated": len(cut_by_data & bad),
            "lines_cut_by_data_healthy": sum(i in cut_by_data for i in healthy),
            "feature_psi": summary.get("feature_psi", {})}


def _share_within(pd: np.ndarray, y: np.ndarray, rate: float) -> float:
    """The largest share of SMEs, taken by rising PD, whose default rate stays at `rate`."""
    order = np.argsort(pd, kind="stable")
    running = np.cumsum(y[order]) / np.arange(1, len(order) + 1)
    within = np.flatnonzero(running <= rate)
    return float((within[-1] + 1) / len(order)) if within.size else 0.0


def credit_white_share(net: LocalNetwork, tables: dict[str, Any], segments: dict[str, Any],
                       applicants: list[str], decisions: list[Any]) -> dict[str, Any]:
    """At the bank's current default rate (of its customers with loan history), the share of
    its credit-white customers that get a line when ranked by the joint PD and by a bank-only
    model's (both fitted on the bank's labelled rows: in-sample for both)."""
    bank = tables[LABEL_PARTY].training_view()
    y = bank.y.astype(np.float64)
    white = np.asarray([segments[i]["credit_white"] == "1" for i in bank.ids])
    rate = float(y[~white].mean())
    config = VlrConfig(validation_fraction=0.0)
    design, penalized = pooled_design(bank.X, [], config)
    bank_only = design @ train_centralized(design, y, penalized, config).weights
    index = {i: k for k, i in enumerate(applicants)}
    joint = np.asarray([decisions[index[i]].probability for i in bank.ids])
    return {"bank_default_rate": round(rate, 4), "credit_white_customers": int(white.sum()),
            "credit_white_default_rate": round(float(y[white].mean()), 4),
            "joint_share": round(_share_within(joint[white], y[white], rate), 4),
            "bank_only_share": round(_share_within(bank_only[white], y[white], rate), 4)}

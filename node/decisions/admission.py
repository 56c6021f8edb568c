"""Admission by strategy over joint decisions: the facts each rule sees, outcomes, a dry-run.

The facts of an applicant are the bank's own fields (its table row, the request's values over
it) and the joint result (`pd`, `score`, `grade`). They are stored with each decision, so a
strategy change can be replayed over past decisions (`dry_run`) before it goes live.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from node.decisions.strategy import Admission, Strategy, evaluate, grade_rank
from node.policy import CreditPolicy
from node.scoring.bank import BankScorer, Features
from node.scoring.bank_table import BankRows
from node.scoring.outcome import Decision


def own_facts(scorer: BankScorer, ids: Sequence[str],
              features: Sequence[Features | None] | None = None,
              view: BankRows | None = None) -> dict[str, np.ndarray]:
    """Every column of the bank's table (`view`, default the scorer's current one) for `ids`
    (NaN where it holds no row), the request's values over them."""
    view = view or scorer.view
    table = view.table
    rows = np.fromiter((view.row_of.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
    held = rows >= 0
    X = np.where(held[:, None], table.X[np.where(held, rows, 0)], np.nan)
    facts = {name: X[:, j].copy() for j, name in enumerate(table.features)}
    for k, given in enumerate(features or []):
        for name, value in (given or {}).items():
            facts.setdefault(name, np.full(len(ids), np.nan))[k] = \
                np.nan if value is None else float(value)
    return facts


def joint_facts(policy: CreditPolicy, decisions: Sequence[Decision]) -> dict[str, np.ndarray]:
    """`pd`, `score` and `grade` (as rank) of each decision; NaN where it has none."""
    decided = np.asarray([d.outcome == "decided" for d in decisions], dtype=bool)
    pd = np.where(decided, [d.probability for d in decisions], np.nan)
    score = np.asarray([np.nan if d.score is None else d.score for d in decisions], dtype=float)
    grades = [g.grade for g in policy.grades]
    return {"pd": pd, "score": np.where(decided, score, np.nan),
            "grade": grade_rank(grades, [d.grade if d.outcome == "decided" else None
                                         for d in decisions])}


def admit(policy: CreditPolicy, decisions: Sequence[Decision],
          own: dict[str, np.ndarray], strategy: Strategy | None = None) -> Admission:
    """The strategy's outcome for each decision (the policy's own strategy by default)."""
    facts = {**own, **joint_facts(policy, decisions)}
    line = np.asarray([np.nan if d.credit_line is None else d.credit_line for d in decisions])
    return evaluate(strategy or policy.strategy, facts, [g.grade for g in policy.grades], line)


def _number(value: Any) -> float:
    return np.nan if value is None else float(value)


def dry_run(policy: CreditPolicy, strategy: Strategy, records: Iterable[dict[str, Any]],
            show: int = 20) -> dict[str, Any]:
    """Replay `strategy` over stored decision records: what would change against what was
    decided (outcomes, rules hit, lines), without touching any record."""
    kept = [r for r in records if r.get("admission")]
    if not kept:
        return {"replayed": 0, "changed": 0, "transitions": {}, "rule_hits": {},
                "rule_hits_before": {}, "line_total_before": 0.0, "line_total_after": 0.0,
                "examples": [], "strategy_version": strategy.digest()}
    names = sorted({f for r in kept for f in r["admission"]["facts"]})
    facts = {n: np.asarray([_number(r["admission"]["facts"].get(n)) for r in kept])
             for n in names}
    grades = [g.grade for g in policy.grades]
    facts["pd"] = np.asarray([_number(r["pd"]) for r in kept])
    facts["score"] = np.asarray([_number(r["score"]) for r in kept])
    facts["grade"] = grade_rank(grades, [r["grade"] for r in kept])
    policy_line = np.asarray([_number(r["admission"]["policy_line"]) for r in kept])
    after = evaluate(strategy, facts, grades, policy_line)
    before_outcome = [r["admission"]["outcome"] for r in kept]
    before_line = np.asarray([_number(r["credit_line"]) for r in kept])
    changed = [k for k in range(len(kept)) if before_outcome[k] != after.outcome[k]
               or abs(np.nan_to_num(before_line[k]) - after.line[k]) > 0.5]
    transitions = Counter(f"{before_outcome[k]}->{after.outcome[k]}" for k in changed)
    return {
        "replayed": len(kept), "changed": len(changed),
        "transitions": dict(sorted(transitions.items())),
        "outcomes_before": dict(Counter(before_outcome)),
        "outcomes_after": dict(Counter(after.outcome)),
        "rule_hits": dict(Counter(n for hit in after.rules_hit for n in hit)),
        "rule_hits_before": dict(Counter(n for r in kept for n in r["admission"]["rules_hit"])),
        "line_total_before": float(np.nansum(before_line)),
        "line_total_after": float(after.line.sum()),
        "examples": [{"decision_id": kept[k]["decision_id"], "outcome_before": before_outcome[k],
                      "outcome_after": after.outcome[k], "line_before": before_line[k],
                      "line_after": float(after.line[k]), "rules_hit": after.rules_hit[k]}
                     for k in changed[:show]],
        "strategy_version": strategy.digest(),
    }

"""Admission strategies: validation errors naming file/rule/field, evaluation, dry-run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.errors import DataValidationError
from node.decisions.admission import dry_run
from node.decisions.strategy import Strategy, evaluate, grade_rank, load_strategy
from node.policy import CreditPolicy, load_policy

GRADES = ["A", "B", "C", "D", "E"]
STRATEGY = {
    "version": "s1",
    "segments": [{"name": "credit_white", "when": [{"field": "loan_count", "op": "==",
                                                    "value": 0}]}],
    "rules": [
        {"name": "KO-overdue", "outcome": "knock_out",
         "when": [{"field": "max_overdue_days", "op": ">", "value": 90}]},
        {"name": "REF-white-C", "outcome": "refer", "segments": ["credit_white"],
         "when": [{"field": "grade", "op": "<=", "value": "C"}]},
        {"name": "KO-pd", "outcome": "knock_out", "when": [{"field": "pd", "op": ">=",
                                                            "value": 0.2}]},
    ],
    "lines": [{"segment": "credit_white", "factor": 0.5, "cap": 100000}],
}


def test_rules_segments_outcomes_and_lines() -> None:
    strategy = Strategy.model_validate(STRATEGY)
    facts = {"loan_count": np.array([0, 0, 3, 2]),
             "max_overdue_days": np.array([np.nan, np.nan, 120, 0]),
             "pd": np.array([0.01, 0.05, 0.02, 0.25]),
             "grade": grade_rank(GRADES, ["A", "C", "A", "E"])}
    out = evaluate(strategy, {k: np.asarray(v, float) for k, v in facts.items()}, GRADES,
                   np.array([400000.0, 100000.0, 900000.0, 0.0]))
    assert out.segment == ["credit_white", "credit_white", "other", "other"]
    assert out.outcome == ["approve", "refer", "knock_out", "knock_out"]
    assert out.rules_hit == [[], ["REF-white-C"], ["KO-overdue"], ["KO-pd"]]
    assert out.line.tolist() == [100000.0, 50000.0, 0.0, 0.0]


def test_errors_name_file_rule_and_field(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[[rules]]\nname = "KO-x"\noutcome = "knock_out"\n'
                    'when = [{field = "pd", op = "~", value = 1}]\n')
    with pytest.raises(DataValidationError, match=r"s\.toml.*rule 'KO-x'.*when\.0\.op"):
        load_strategy(path)
    path.write_text('[[rules]]\nname = "R"\noutcome = "refer"\nsegments = ["nope"]\n'
                    'when = [{field = "pd", op = ">", value = 0.1}]\n')
    with pytest.raises(DataValidationError, match="unknown segment 'nope'"):
        load_strategy(path)


def test_policy_file_carries_strategy_and_monitoring(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('version = "p"\n[strategy]\ndefault_outcome = "refer"\n'
                    '[[strategy.rules]]\nname = "bad"\noutcome = "approve"\n'
                    'when = [{field = "grade", op = ">=", value = 3}]\n')
    with pytest.raises(DataValidationError, match=r"\[strategy\].*rule 'bad'"):
        load_policy(path)
    path.write_text('[strategy]\ndefault_outcome = "refer"\n[monitoring]\nmax_raise = 0.2\n')
    policy = load_policy(path)
    assert policy.strategy.default_outcome == "refer" and policy.monitoring.max_raise == 0.2


def _record(k: int, pd: float, grade: str, loan_count: float, line: float) -> dict[str, object]:
    return {"decision_id": f"d{k}", "pd": pd, "score": 600.0, "grade": grade,
            "credit_line": line, "admission": {"outcome": "approve", "rules_hit": [],
                                               "policy_line": line, "segment": "other",
                                               "facts": {"loan_count": loan_count}}}


def test_dry_run_reports_what_would_change() -> None:
    records = [_record(0, 0.01, "A", 0, 400000), _record(1, 0.05, "C", 0, 100000),
               _record(2, 0.02, "A", 3, 900000), {"decision_id": "x", "admission": None}]
    report = dry_run(CreditPolicy(), Strategy.model_validate(STRATEGY), records)
    assert report["replayed"] == 3 and report["changed"] == 2
    assert report["transitions"] == {"approve->approve": 1, "approve->refer": 1}
    assert report["rule_hits"] == {"REF-white-C": 1}
    assert report["line_total_after"] == 100000 + 50000 + 900000

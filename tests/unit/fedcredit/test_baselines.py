"""Baselines that need XGBoost say so when it is missing, and the rest still runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from fedcredit import evaluate
from fedcredit.bench.sbt import run_sbt_benchmark


def _hide(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == module else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_a_missing_baseline_gets_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    assert evaluate.missing_baseline("numpy") is None
    _hide(monkeypatch, "xgboost")

    note = evaluate.missing_baseline("xgboost")

    assert note == "xgboost not installed: pip install 'fedcredit[baselines]'"


def test_compare_sbt_without_xgboost_is_null_with_a_note(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    _hide(monkeypatch, "xgboost")

    twin = evaluate.compare_sbt(tmp_path, {}, "bank", [], "job", {})

    assert twin["auc_xgboost"] is None and twin["xgboost_seconds_per_tree"] is None
    assert "pip install 'fedcredit[baselines]'" in twin["baseline_note"]


@pytest.mark.parametrize("installed", [True, False])
def test_bench_sbt_with_and_without_xgboost(monkeypatch: pytest.MonkeyPatch,
                                            installed: bool) -> None:
    if installed:
        pytest.importorskip("xgboost")
    else:
        _hide(monkeypatch, "xgboost")

    result = run_sbt_benchmark(300, 2, 3, trees=1, depth=2, bins=8)

    assert result["same_trees"] is True
    if installed:
        assert isinstance(result["xgboost_auc"], float) and "baseline_note" not in result
    else:
        assert result["xgboost_auc"] is None and result["ratio_to_xgboost"] is None
        assert "xgboost not installed" in str(result["baseline_note"])

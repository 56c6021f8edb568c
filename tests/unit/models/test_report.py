"""The validation report's assembly: figures equal the metrics, nothing per row, JSON-safe."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.metrics import auc, decile_table, ks, psi
from models.report import CURVE_POINTS, REPORT_SCHEMA, validation_report


def _rows(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tier = rng.integers(1, 4, n)
    logit = rng.normal(size=n) - 2.0 + 0.3 * tier
    y = (rng.random(n) < 1 / (1 + np.exp(-(logit + rng.normal(size=n))))).astype(int)
    return y, 1 / (1 + np.exp(-logit)), tier


def test_the_report_carries_the_metrics_of_the_rows() -> None:
    y, pd, tier = _rows()
    points = 600 - 30 * np.log(pd / (1 - pd))
    segments = {"tier": {str(t): tier == t for t in (1, 2, 3)},
                "credit_white": {"1": tier == 3, "0": tier != 3}}
    report = validation_report(y, pd, points=points, segments=segments,
                               population=pd[:1000] * 1.5, about={"model_id": "m-v1"})
    assert report["schema"] == REPORT_SCHEMA and report["model_id"] == "m-v1"
    assert (report["rows"], report["bads"]) == (y.size, y.sum())
    assert report["auc"] == auc(y, pd) and report["ks"] == ks(y, pd)
    assert report["gini"] == pytest.approx(2 * auc(y, pd) - 1)
    assert report["deciles"] == decile_table(y, pd, points=points)
    assert len(report["deciles"]) == 10
    assert report["score_distribution"]["score"] == "points"
    assert sum(report["score_distribution"]["bads"]) == y.sum()
    tiers = report["segments"]["tier"]
    assert sorted(tiers) == ["1", "2", "3"]
    assert tiers["2"]["rows"] == (tier == 2).sum()
    assert tiers["2"]["auc"] == auc(y[tier == 2], pd[tier == 2])
    stability = report["stability"]
    assert stability["psi"] == psi(pd, pd[:1000] * 1.5)[0] and stability["reading"] != "stable"
    assert stability["population_rows"] == 1000
    json.dumps(report, allow_nan=False)  # NaN and infinities written as null


def test_curves_are_thinned_so_no_point_stands_for_one_row() -> None:
    y, pd, _ = _rows(n=5000)
    curves = validation_report(y, pd)["curves"]
    roc, ks_curve = curves["roc"], curves["ks"]
    assert len(roc["fpr"]) == len(ks_curve["population"]) <= CURVE_POINTS + 1
    rows_per_point = np.rint(np.diff(ks_curve["population"]) * 5000)
    assert rows_per_point.min() >= 5000 / CURVE_POINTS - 1
    assert (roc["fpr"][0], roc["tpr"][-1]) == (0.0, 1.0)
    assert ks_curve["population"][-1] == pytest.approx(1.0)
    assert np.max(np.abs(np.subtract(ks_curve["bads"], ks_curve["goods"]))) <= ks(y, pd)


def test_a_segment_of_one_class_has_no_auc_and_one_class_overall_is_refused() -> None:
    y, pd, _ = _rows(n=200)
    only_goods = y == 0
    report = validation_report(y, pd, segments={"s": {"goods": only_goods, "none": y > 9}})
    assert report["segments"]["s"]["goods"]["auc"] is None
    assert "none" not in report["segments"]["s"]
    assert report["stability"] is None and report["score_distribution"]["score"] == "pd"
    with pytest.raises(ValueError, match="one class"):
        validation_report(np.zeros(5), np.linspace(0, 1, 5))

"""Tests for the metrics against brute-force definitions, scikit-learn and hand-computed tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from models.metrics import (
    PSI_FLOOR,
    auc,
    decile_table,
    gini,
    ks,
    ks_curve,
    log_loss,
    psi,
    quantile_edges,
    roc_curve,
    score_histogram,
)


def _ks_brute(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    return max(abs(np.mean(pos <= t) - np.mean(neg <= t)) for t in np.unique(s))


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(-5, 5)), min_size=2, max_size=60))
def test_auc_and_ks_match_their_definitions_with_ties(pairs: list[tuple[int, int]]) -> None:
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs], dtype=float)
    if y.min() == y.max():
        assert math.isnan(auc(y, s)) and math.isnan(ks(y, s))
        return
    assert auc(y, s) == np.float64(roc_auc_score(y, s)).item() or np.isclose(
        auc(y, s), roc_auc_score(y, s)
    )
    assert np.isclose(ks(y, s), _ks_brute(y, s))


def test_log_loss_is_stable_for_large_logits() -> None:
    y = np.array([1.0, 0.0, 1.0])
    z = np.array([800.0, -800.0, 0.0])
    assert np.isclose(log_loss(y, z), math.log(2) / 3)
    assert np.isfinite(log_loss(np.array([0.0]), np.array([800.0])))


def test_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    scores = np.round(rng.random(500) + 0.3 * y, 1)  # many ties

    assert auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert auc(np.ones(4), np.arange(4), undefined=0.5) == 0.5


# 10 rows in 5 equal bins of 2, riskiest first: bads 2, 1, 0, 1, 0 (4 bads, 6 goods).
HAND_SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
HAND_LABELS = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0])


def test_decile_table_matches_a_hand_computed_table() -> None:
    table = decile_table(HAND_LABELS, HAND_SCORES, bins=5, points=-10 * HAND_SCORES)
    by_hand = [  # bads, bad rate, lift, cum rows, cum bads (gains), cum goods, KS, cum lift
        (2, 1.0, 2.5, 0.2, 0.5, 0.0, 0.5, 2.5),
        (1, 0.5, 1.25, 0.4, 0.75, 1 / 6, 0.75 - 1 / 6, 1.875),
        (0, 0.0, 0.0, 0.6, 0.75, 0.5, 0.25, 1.25),
        (1, 0.5, 1.25, 0.8, 1.0, 4 / 6, 1 / 3, 1.25),
        (0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0),
    ]
    assert [row["bin"] for row in table] == [1, 2, 3, 4, 5]
    assert all(row["rows"] == 2 for row in table)
    for row, (bads, rate, lift, rows, gains, goods, ks_at, cum_lift) in zip(
            table, by_hand, strict=True):
        assert row["bads"] == bads and row["goods"] == 2 - bads
        assert row["bad_rate"] == pytest.approx(rate)
        assert row["lift"] == pytest.approx(lift)
        assert row["cum_rows"] == pytest.approx(rows)
        assert row["cum_bads"] == pytest.approx(gains)
        assert row["cum_goods"] == pytest.approx(goods)
        assert row["ks"] == pytest.approx(ks_at)
        assert row["cum_lift"] == pytest.approx(cum_lift)
    assert (table[0]["min_score"], table[0]["max_score"]) == (0.8, 0.9)
    assert (table[0]["min_points"], table[0]["max_points"]) == (-9.0, -8.0)
    assert max(row["ks"] for row in table) == pytest.approx(ks(HAND_LABELS, HAND_SCORES))


def test_decile_table_keeps_ties_in_one_bin() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 1, 0])
    s = np.array([3.0, 3.0, 3.0, 3.0, 3.0, 1.0, 2.0, 0.0])  # five tied at the top
    table = decile_table(y, s, bins=4)
    assert sum(row["rows"] for row in table) == 8
    # quartile edges 0, 1, 3, 3, 3: the repeated 3s collapse, the five 3s share the top bin
    assert len(table) == 2
    assert (table[0]["rows"], table[0]["min_score"], table[0]["max_score"]) == (6, 2.0, 3.0)


@settings(max_examples=40)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(-6, 6)), min_size=4, max_size=80),
       st.integers(1, 12))
def test_decile_table_sums_and_ends_hold_for_any_scores(pairs: list[tuple[int, int]],
                                                        bins: int) -> None:
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs], dtype=float)
    if y.min() == y.max():
        return
    table = decile_table(y, s, bins=bins)
    assert 1 <= len(table) <= bins
    assert sum(row["rows"] for row in table) == y.size
    assert sum(row["bads"] for row in table) == y.sum()
    assert table[-1]["cum_bads"] == pytest.approx(1.0)
    assert table[-1]["cum_goods"] == pytest.approx(1.0)
    assert all(a["min_score"] > b["max_score"] for a, b in zip(table, table[1:], strict=False))
    assert max(row["ks"] for row in table) <= ks(y, s) + 1e-12


def test_quantile_edges_are_observed_scores_with_equal_counts() -> None:
    edges = quantile_edges(np.arange(10), 5)
    assert edges.tolist() == [0.0, 1.0, 3.0, 5.0, 7.0, 9.0]  # bins [0,1] (1,3] (3,5] (5,7] (7,9]
    assert quantile_edges(np.array([0, 0, 0, 1]), 7).tolist() == [0.0, 1.0]


def test_roc_curve_matches_sklearn_and_gini_is_two_auc_minus_one() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    s = np.round(rng.random(400) + 0.4 * y, 2)  # ties
    fpr, tpr, thresholds = roc_curve(y, s)
    sk_fpr, sk_tpr, sk_thresholds = sk_roc_curve(y, s, drop_intermediate=False)
    assert np.allclose(fpr, sk_fpr) and np.allclose(tpr, sk_tpr)
    assert np.allclose(thresholds[1:], sk_thresholds[1:])
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(y, s))
    assert gini(y, s) == pytest.approx(2 * roc_auc_score(y, s) - 1)


def test_ks_curve_gap_is_the_ks() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)
    share, bads, goods = ks_curve(y, s)
    assert share[0] == bads[0] == goods[0] == 0.0
    assert share[-1] == pytest.approx(1.0) and bads[-1] == pytest.approx(1.0)
    assert np.max(np.abs(bads - goods)) == pytest.approx(ks(y, s))
    assert np.all(np.diff(share) > 0)


def test_psi_matches_a_hand_computation() -> None:
    expected = np.arange(100.0)  # quartiles: 25 rows each
    actual = np.concatenate([np.arange(10.0), 30 + np.arange(10.0), 60 + np.arange(10.0),
                             80 + np.arange(20.0)])  # shares 0.2, 0.2, 0.2, 0.4
    total, table = psi(expected, actual, bins=4)
    by_hand = 3 * (0.2 - 0.25) * math.log(0.2 / 0.25) + (0.4 - 0.25) * math.log(0.4 / 0.25)
    assert total == pytest.approx(by_hand)  # 0.10397
    assert [row["expected"] for row in table] == [0.25] * 4
    assert [row["actual"] for row in table] == pytest.approx([0.2, 0.2, 0.2, 0.4])
    assert table[0]["lower"] == -math.inf and table[-1]["upper"] == math.inf
    assert sum(row["psi"] for row in table) == pytest.approx(total)
    assert psi(expected, expected, bins=10)[0] == 0.0


def test_psi_floors_an_empty_bin() -> None:
    expected = np.arange(100.0)
    actual = np.arange(50.0, 100.0)  # nothing in the lower half
    total, table = psi(expected, actual, bins=2)
    by_hand = (PSI_FLOOR - 0.5) * math.log(PSI_FLOOR / 0.5) + 0.5 * math.log(1.0 / 0.5)
    assert total == pytest.approx(by_hand)
    assert table[0]["actual"] == 0.0


def test_score_histogram_counts_every_row_once() -> None:
    y = np.array([1, 0, 0, 1, 0])
    hist = score_histogram(y, np.array([0.1, 0.2, 0.5, 0.9, 1.0]), bins=3)
    assert len(hist["edges"]) == 4
    assert sum(hist["bads"]) == 2 and sum(hist["goods"]) == 3
    assert hist["bads"] == [1.0, 0.0, 1.0]

"""Tests for AUC, KS and log loss against brute-force definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from models.metrics import auc, ks, log_loss


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

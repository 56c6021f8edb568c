"""Tests for per-party standardisation, mean imputation and the presence indicator."""

from __future__ import annotations

import numpy as np

from models.vlr import FeatureAlignment
from models.vlr.preprocess import Standardizer, feature_design, label_design


def test_standardizer_fits_on_training_rows_and_imputes_the_mean() -> None:
    rows = np.array([[1.0, 10.0], [3.0, np.nan], [5.0, 30.0]])
    scaler = Standardizer.fit(rows)
    assert np.allclose(scaler.mean, [3.0, 20.0])
    out = scaler.transform(rows)
    assert out[1, 1] == 0.0 and np.isclose(out[:, 0].std(), 1.0)
    assert np.allclose(Standardizer.fit(np.array([[2.0], [2.0]])).scale, 1.0)  # constant column


def test_label_design_appends_the_intercept_and_uses_only_training_rows() -> None:
    x = np.array([[0.0], [2.0], [100.0]])
    design, scaler = label_design(x, np.array([0, 1]))
    assert np.allclose(scaler.mean, [1.0]) and np.allclose(design[:, 1], 1.0)
    assert np.allclose(design[:2, 0], [-1.0, 1.0])


def test_rows_a_feature_party_lacks_contribute_zero_and_an_absent_flag() -> None:
    table = np.array([[4.0, 1.0], [np.nan, 3.0], [8.0, 5.0]])  # F's own row order
    alignment = FeatureAlignment(5, positions=np.array([4, 0, 2]), own_rows=np.array([0, 1, 2]))
    design, scaler = feature_design(table, alignment, train_positions=np.array([0, 1, 3, 4]))
    assert design.shape == (5, 3)
    assert np.array_equal(design[:, 2], [1.0, 0.0, 1.0, 0.0, 1.0])
    assert np.all(design[[1, 3]] == 0.0)
    assert np.allclose(scaler.mean, [4.0, 2.0])  # own rows at training positions 4 and 0 only
    assert design[0, 0] == 0.0  # missing value imputed with the mean


def test_full_coverage_needs_no_indicator() -> None:
    alignment = FeatureAlignment(3, np.array([2, 0, 1]), np.array([0, 1, 2]))
    design, _ = feature_design(np.arange(6.0).reshape(3, 2), alignment, np.arange(3))
    assert design.shape == (3, 2)

"""Tests for OS-random float masks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.masks import uniform_mask


def test_masks_have_the_shape_and_bound_asked_for() -> None:
    mask = uniform_mask((3, 4096), 10.0)
    assert mask.shape == (3, 4096) and mask.dtype == np.float64
    assert np.all(np.abs(mask) <= 10.0)
    assert abs(float(mask.mean())) < 0.5 and mask.std() > 5.0  # uniform on ±10: std ≈ 5.8


def test_masks_do_not_come_from_numpys_global_or_seeded_rng() -> None:
    np.random.seed(0)
    first = uniform_mask(64, 1.0)
    np.random.seed(0)
    second = uniform_mask(64, 1.0)
    assert not np.array_equal(first, second)
    assert np.unique(first).size == 64


@pytest.mark.parametrize("bound", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_bounds_are_refused(bound: float) -> None:
    with pytest.raises(ValueError):
        uniform_mask(4, bound)


@given(st.floats(min_value=1e-6, max_value=1e12), st.integers(min_value=1, max_value=50))
def test_masks_stay_within_any_bound(bound: float, n: int) -> None:
    assert np.all(np.abs(uniform_mask(n, bound)) <= bound)


def test_orthogonal_masks_cancel_in_the_weighted_sum_and_vary() -> None:
    from crypto.masks import orthogonal_mask

    for weights in ([3, -5, 0, 7], [4, 8, -12], [0, 0, 0], [1 << 20, 3 << 20]):
        w = np.array(weights, dtype=np.int64)
        first, second = orthogonal_mask(w, 59), orthogonal_mask(w, 59)
        for m in (first, second):
            assert sum(int(a) * int(b) for a, b in zip(w, m, strict=True)) % (1 << 59) == 0
        assert not np.array_equal(first, second)

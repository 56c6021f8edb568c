"""Tests for SecureBoost's packed gradient quantisation (G + 2^k H in one residue mod t)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.he.bfv_ring import HIST_PLAIN_BITS
from models.sbt.tree import quantize, unpack_sums


@settings(max_examples=60)
@given(
    st.lists(st.floats(-1, 1, allow_nan=False), min_size=1, max_size=300),
    st.integers(0, 2**32 - 1),
)
def test_packed_gradient_sums_unpack_exactly(gradients: list[float], seed: int) -> None:
    g = np.asarray(gradients)
    h = np.abs(g) * (1 - np.abs(g))
    t = 1 << HIST_PLAIN_BITS
    bits, shift, gq, hq, packed = quantize(g, h, t)
    subset = np.random.default_rng(seed).random(g.size) < 0.5
    residue = np.array([int(packed[subset].astype(object).sum()) % t], dtype=np.uint64)
    sum_g, sum_h = unpack_sums(residue, shift, t)
    assert sum_g[0] == gq[subset].sum() and sum_h[0] == hq[subset].sum()
    assert np.all(np.abs(gq * 2.0**-bits - g) <= 2.0 ** -(bits + 1))

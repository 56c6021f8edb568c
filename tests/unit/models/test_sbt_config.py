"""Tests for SecureBoost's configuration, quantile binning and wire encodings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from common.errors import ProtocolError
from models.sbt import (
    SbtConfig,
    StepKey,
    decode_head,
    decode_ints,
    decode_mask,
    encode_head,
    encode_ints,
    encode_mask,
    quantile_bins,
)


@pytest.mark.parametrize(
    "changes",
    [
        {"trees": 0},
        {"depth": 0},
        {"bins": 1},
        {"bins": 256},
        {"learning_rate": 0.0},
        {"reg_lambda": -1.0},
        {"subsample": 0.0},
        {"goss": (0.8, 0.3)},
    ],
)
def test_bad_settings_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SbtConfig(**changes)  # type: ignore[arg-type]


def test_defaults_follow_fates_benchmark_settings() -> None:
    config = SbtConfig()
    assert (config.trees, config.depth, config.bins, config.learning_rate) == (30, 3, 32, 0.3)
    assert config.slots == 33


@settings(max_examples=80)
@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 60), st.integers(1, 3)),
        elements=st.one_of(st.floats(-5, 5, allow_nan=False), st.just(np.nan)),
    ),
    st.integers(2, 16),
)
def test_codes_agree_with_thresholds(table: np.ndarray, bins: int) -> None:
    binning = quantile_bins(table, bins)
    for j, edges in enumerate(binning.edges):
        assert edges.size <= bins - 1 and np.all(np.diff(edges) > 0)
        codes, x = binning.codes[:, j], table[:, j]
        assert np.all(codes[np.isnan(x)] == bins)
        present = ~np.isnan(x)
        for b in range(bins):
            assert np.array_equal(codes[present] <= b, x[present] <= binning.threshold(j, b))
        if present.any():  # no empty top bin: the largest value sits above every cut
            assert edges.size == 0 or edges[-1] < np.nanmax(x)


@given(st.lists(st.booleans(), max_size=200))
def test_masks_round_trip(bits: list[bool]) -> None:
    mask = np.array(bits, dtype=bool)
    assert np.array_equal(decode_mask(encode_mask(mask), mask.size), mask)


def test_decoders_refuse_malformed_messages() -> None:
    key = StepKey("job", 2, 1, "histograms")
    assert decode_head(encode_head(b"HREQ", 2, 1, 5), b"HREQ", key) == 5
    with pytest.raises(ProtocolError):
        decode_head(encode_head(b"HREQ", 3, 1, 5), b"HREQ", key)
    with pytest.raises(ProtocolError):
        decode_ints(encode_ints(np.arange(3))[:-1])
    with pytest.raises(ProtocolError):
        decode_ints(encode_ints(np.arange(3)), expected=4)
    with pytest.raises(ProtocolError):
        decode_mask(b"\x00\x00", 3)

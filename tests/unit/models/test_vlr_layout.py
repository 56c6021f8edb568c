"""Tests for the packed rotation layout of X^T[d] and the encrypted gradient it yields."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.he import CkksBackend, CkksParams, PlainBackend
from models.vlr.layout import PackedLayout, PlaintextCache


def _packed_gradient(
    backend: PlainBackend | CkksBackend,
    layout: PackedLayout,
    x: np.ndarray,
    d: np.ndarray,
    reader: PlainBackend | CkksBackend,
) -> np.ndarray:
    masks = np.random.default_rng(0).uniform(-1e9, 1e9, size=(layout.groups, layout.slots))
    blob = backend.masked_packed_products(
        backend.encrypt(d), backend.prepare(layout.plaintexts(x)), masks
    )
    values = reader.decrypt(blob) - masks.reshape(-1)
    return values[layout.output_slots()]


@settings(max_examples=25, deadline=None)
@given(
    features=st.integers(min_value=1, max_value=40),
    rows=st.integers(min_value=1, max_value=64),
    fold_power=st.integers(min_value=0, max_value=6),
)
def test_layout_puts_each_features_gradient_in_its_slot(
    features: int, rows: int, fold_power: int
) -> None:
    twin = PlainBackend.for_testing(64)
    layout = PackedLayout(features, 64, 2**fold_power)
    rng = np.random.default_rng(features * 100 + rows)
    x, d = rng.normal(size=(rows, features)), rng.normal(size=rows)
    got = _packed_gradient(twin, layout, x, d, twin)
    assert np.allclose(got, x.T @ d, atol=1e-6)


def test_encrypted_gradient_equals_the_plaintext_gradient() -> None:
    private = CkksBackend.create(CkksParams())
    public = CkksBackend.from_public_bytes(private.public_bytes())
    rng = np.random.default_rng(3)
    rows, features = 4096, 45
    x = rng.normal(size=(rows, features)) * rng.uniform(0.1, 10, size=features)
    d = rng.uniform(-1.5, 1.5, size=rows)
    layout = PackedLayout.choose(features, public.slot_count)
    got, want = _packed_gradient(public, layout, x, d, private), x.T @ d
    assert np.abs(got - want).max() < 1e-6 * np.abs(want).max()  # measured ~3e-8


@pytest.mark.parametrize(("features", "folds"), [(1, {1, 2}), (31, {8, 16}), (300, {32, 64})])
def test_fold_choice_follows_the_measured_costs(features: int, folds: set[int]) -> None:
    layout = PackedLayout.choose(features, 4096)
    assert layout.fold in folds and layout.groups == -(-features // layout.fold)


def test_bad_layouts_are_refused() -> None:
    with pytest.raises(ValueError):
        PackedLayout(3, 4096, 3)
    with pytest.raises(ValueError):
        PackedLayout(3, 64, 4).plaintexts(np.zeros((65, 3)))


def test_plaintext_cache_keeps_within_its_budget() -> None:
    twin = PlainBackend.for_testing(8)
    item = twin.prepare(np.ones((1, 2, 8)))  # 128 bytes
    cache = PlaintextCache(budget=300)
    for name in (b"a", b"b", b"c"):
        cache.put(name, item)
    assert cache.get(b"a") is None and cache.get(b"c") is item
    PlaintextCache(budget=0).put(b"a", item)

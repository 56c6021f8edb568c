"""Tests for SecureBoost's homomorphic layer: BFV coefficient packing against SEAL and the twin."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal.sealapi as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import ProtocolError
from crypto.ckks import PRODUCTION_ENV, unpack_frames
from models.sbt import he
from models.sbt.label import quantize, unpack_sums

SLOTS = 9
WIDTH = he.chunk_width(SLOTS)


@pytest.fixture(scope="module")
def keys() -> tuple[he.BfvPrivate, he.BfvPublic]:
    private = he.BfvPrivate()
    return private, he.BfvPublic.from_public_bytes(private.public_bytes())


def twin() -> he.PlainTwin:
    return he.PlainTwin.suite_for_testing().make_private()  # type: ignore[return-value]


def test_packed_products_are_bit_identical_to_seal_multiply_plain(
    keys: tuple[he.BfvPrivate, he.BfvPublic],
) -> None:
    private, public = keys
    rng = np.random.default_rng(3)
    values = rng.integers(0, 1 << 50, WIDTH).astype(np.uint64)
    bins = rng.integers(0, SLOTS, (WIDTH, 2)).astype(np.uint8)
    bfv = public._hist
    ct = bfv.ciphertext(unpack_frames(private.encrypt_chunks(values, SLOTS))[1])
    ours = he.packed_products(bfv.raw(ct)[None], bins, SLOTS, bfv.primes)
    for f in range(2):
        exps = sorted((bins[:, f].astype(int) * WIDTH + WIDTH - 1 - np.arange(WIDTH)).tolist())
        plain = sa.Plaintext(" + ".join(f"1x^{e}" if e else "1" for e in exps[::-1]))
        seal = sa.Ciphertext(bfv.ctx)
        bfv.evaluator.multiply_plain(ct, plain, seal)
        assert np.array_equal(ours[f], bfv.raw(seal))


def test_encrypted_histograms_decrypt_to_the_twins_exact_sums(
    keys: tuple[he.BfvPrivate, he.BfvPublic],
) -> None:
    private, public = keys
    rng = np.random.default_rng(4)
    rows, features = 2 * WIDTH + 17, 3
    signed = rng.integers(-(2**45), 2**45, rows)
    values = (signed % private.plain_modulus).astype(np.uint64)
    bins = rng.integers(0, SLOTS, (rows, features)).astype(np.uint8)
    answer = public.histograms(private.encrypt_chunks(values, SLOTS), bins, SLOTS)
    got = private.decrypt_histograms(answer, features, SLOTS)
    plain = twin()
    expected = plain.decrypt_histograms(
        plain.histograms(plain.encrypt_chunks(values, SLOTS), bins, SLOTS), features, SLOTS
    )
    assert np.array_equal(got, expected)
    for f in range(features):
        for b in range(SLOTS):
            assert int(got[f, b]) == int(signed[bins[:, f] == b].sum()) % private.plain_modulus


def test_answers_are_masked_flooded_and_rerandomised(
    keys: tuple[he.BfvPrivate, he.BfvPublic],
) -> None:
    private, public = keys
    rng = np.random.default_rng(5)
    values = rng.integers(0, 1 << 40, WIDTH).astype(np.uint64)
    bins = rng.integers(0, SLOTS, (WIDTH, 1)).astype(np.uint8)
    chunks = private.encrypt_chunks(values, SLOTS)
    bfv = public._hist
    raw = np.stack([bfv.raw(bfv.ciphertext(f)) for f in unpack_frames(chunks)[1:]])
    bare = bfv.from_raw(he.packed_products(raw, bins, SLOTS, bfv.primes)[0])
    sent = bfv.ciphertext(unpack_frames(public.histograms(chunks, bins, SLOTS))[1])
    # c1 differs from the bare product's (L, knowing its own c1, could otherwise solve for P)
    assert np.mean(bfv.raw(sent)[1] != bfv.raw(bare)[1]) > 0.99
    clear_bare, clear_sent = sa.Plaintext(), sa.Plaintext()
    private._hist_dec.decrypt(bare, clear_bare)
    private._hist_dec.decrypt(sent, clear_sent)
    targets = set(he.histogram_targets(SLOTS).tolist())
    others = [i for i in range(he.RING_DEGREE) if i not in targets]
    coeff = [(clear_bare.data(i), clear_sent.data(i)) for i in others[:2000]]
    assert sum(a != b for a, b in coeff) > 1990  # partial sums are hidden off the targets
    assert all(clear_bare.data(i) == clear_sent.data(i) for i in targets)  # the sums survive


def test_slot_products_and_sums_match_the_twin(keys: tuple[he.BfvPrivate, he.BfvPublic]) -> None:
    private, public = keys
    rng = np.random.default_rng(6)
    selectors = rng.integers(0, 2, 9000).astype(np.uint64)
    f1, f2 = (he.random_nonzero(9000, private.score_modulus) for _ in range(2))
    f1[::3] = 0
    cipher = private.encrypt_slots(selectors)
    got = private.decrypt_slots(
        public.add_slots([public.multiply_slots(cipher, f1), public.multiply_slots(cipher, f2)])
    )
    plain = twin()
    c = plain.encrypt_slots(selectors)
    expected = plain.decrypt_slots(
        plain.add_slots([plain.multiply_slots(c, f1), plain.multiply_slots(c, f2)])
    )
    assert np.array_equal(got, expected)
    assert np.array_equal(got, (selectors * ((f1 + f2) % private.score_modulus)))


def test_public_side_holds_no_secret_and_refuses_garbage(
    keys: tuple[he.BfvPrivate, he.BfvPublic],
) -> None:
    _, public = keys
    assert not hasattr(public, "_hist_dec") and not hasattr(public, "decrypt_histograms")
    with pytest.raises(ProtocolError):
        he.BfvPublic.from_public_bytes(b"not a context")
    with pytest.raises(ProtocolError):
        public.histograms(b"garbage", np.zeros((3, 1), np.uint8), SLOTS)


def test_the_twin_is_unreachable_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError):
        he.PlainTwin()
    monkeypatch.setenv(PRODUCTION_ENV, "1")
    with pytest.raises(RuntimeError):
        he.PlainTwin.suite_for_testing()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1, 1, allow_nan=False), min_size=1, max_size=300),
    st.integers(0, 2**32 - 1),
)
def test_packed_gradient_sums_unpack_exactly(gradients: list[float], seed: int) -> None:
    g = np.asarray(gradients)
    h = np.abs(g) * (1 - np.abs(g))
    t = 1 << he.HIST_PLAIN_BITS
    bits, shift, gq, hq, packed = quantize(g, h, t)
    subset = np.random.default_rng(seed).random(g.size) < 0.5
    residue = np.array([int(packed[subset].astype(object).sum()) % t], dtype=np.uint64)
    sum_g, sum_h = unpack_sums(residue, shift, t)
    assert sum_g[0] == gq[subset].sum() and sum_h[0] == hq[subset].sum()
    assert np.all(np.abs(gq * 2.0**-bits - g) <= 2.0 ** -(bits + 1))

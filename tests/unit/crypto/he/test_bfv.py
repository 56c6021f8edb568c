"""Tests for the BFV backend (SecureBoost): coefficient packing against SEAL and the twin."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal.sealapi as sa

from common.errors import ProtocolError
from crypto.he import (
    BFV_SUITE,
    PRODUCTION_ENV,
    BfvPrivate,
    BfvPublic,
    PlainTwin,
    check_128_bit,
    random_nonzero,
)
from crypto.he.bfv_packing import packed_products
from crypto.he.bfv_ring import (
    HIST_COEFF_BITS,
    RING_DEGREE,
    SCORE_COEFF_BITS,
    BfvRing,
    chunk_width,
    histogram_targets,
)
from crypto.he.frames import pack_frames, unpack_frames
from tests.unit.crypto.he.weak import weak_public_key

SLOTS = 9
WIDTH = chunk_width(SLOTS)


@pytest.fixture(scope="module")
def keys() -> tuple[BfvPrivate, BfvPublic]:
    private = BfvPrivate()
    return private, BfvPublic.from_public_bytes(private.public_bytes())


def twin() -> PlainTwin:
    return PlainTwin.suite_for_testing().make_private()  # type: ignore[return-value]


def test_packed_products_are_bit_identical_to_seal_multiply_plain(
    keys: tuple[BfvPrivate, BfvPublic],
) -> None:
    private, public = keys
    rng = np.random.default_rng(3)
    values = rng.integers(0, 1 << 50, WIDTH).astype(np.uint64)
    bins = rng.integers(0, SLOTS, (WIDTH, 2)).astype(np.uint8)
    bfv = public._hist
    ct = bfv.ciphertext(unpack_frames(private.encrypt_chunks(values, SLOTS))[1])
    ours = packed_products(bfv.raw(ct)[None], bins, SLOTS, bfv.primes)
    for f in range(2):
        exps = sorted((bins[:, f].astype(int) * WIDTH + WIDTH - 1 - np.arange(WIDTH)).tolist())
        plain = sa.Plaintext(" + ".join(f"1x^{e}" if e else "1" for e in exps[::-1]))
        seal = sa.Ciphertext(bfv.ctx)
        bfv.evaluator.multiply_plain(ct, plain, seal)
        assert np.array_equal(ours[f], bfv.raw(seal))


def test_encrypted_histograms_decrypt_to_the_twins_exact_sums(
    keys: tuple[BfvPrivate, BfvPublic],
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
    keys: tuple[BfvPrivate, BfvPublic],
) -> None:
    private, public = keys
    rng = np.random.default_rng(5)
    values = rng.integers(0, 1 << 40, WIDTH).astype(np.uint64)
    bins = rng.integers(0, SLOTS, (WIDTH, 1)).astype(np.uint8)
    chunks = private.encrypt_chunks(values, SLOTS)
    bfv = public._hist
    raw = np.stack([bfv.raw(bfv.ciphertext(f)) for f in unpack_frames(chunks)[1:]])
    bare = bfv.from_raw(packed_products(raw, bins, SLOTS, bfv.primes)[0])
    sent = bfv.ciphertext(unpack_frames(public.histograms(chunks, bins, SLOTS))[1])
    # c1 differs from the bare product's (L, knowing its own c1, could otherwise solve for P)
    assert np.mean(bfv.raw(sent)[1] != bfv.raw(bare)[1]) > 0.99
    clear_bare, clear_sent = sa.Plaintext(), sa.Plaintext()
    private._hist_dec.decrypt(bare, clear_bare)
    private._hist_dec.decrypt(sent, clear_sent)
    targets = set(histogram_targets(SLOTS).tolist())
    others = [i for i in range(RING_DEGREE) if i not in targets]
    coeff = [(clear_bare.data(i), clear_sent.data(i)) for i in others[:2000]]
    assert sum(a != b for a, b in coeff) > 1990  # partial sums are hidden off the targets
    assert all(clear_bare.data(i) == clear_sent.data(i) for i in targets)  # the sums survive


def test_slot_products_and_sums_match_the_twin(keys: tuple[BfvPrivate, BfvPublic]) -> None:
    private, public = keys
    rng = np.random.default_rng(6)
    selectors = rng.integers(0, 2, 9000).astype(np.uint64)
    f1, f2 = (random_nonzero(9000, private.score_modulus) for _ in range(2))
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
    keys: tuple[BfvPrivate, BfvPublic],
) -> None:
    _, public = keys
    assert not hasattr(public, "_hist_dec") and not hasattr(public, "decrypt_histograms")
    with pytest.raises(ProtocolError):
        BfvPublic.from_public_bytes(b"not a context")
    with pytest.raises(ProtocolError):
        public.histograms(b"garbage", np.zeros((3, 1), np.uint8), SLOTS)


def test_the_twin_is_unreachable_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError):
        PlainTwin()
    monkeypatch.setenv(PRODUCTION_ENV, "1")
    with pytest.raises(RuntimeError):
        PlainTwin.suite_for_testing()


def test_a_secret_key_file_is_refused_as_a_public_context(
    keys: tuple[BfvPrivate, BfvPublic],
) -> None:
    private, _ = keys
    with pytest.raises(ProtocolError, match="carries a secret key"):
        BFV_SUITE.load_public(private.private_bytes())
    secrets = unpack_frames(private.private_bytes())[1:]
    with pytest.raises(ProtocolError, match="BFV public key"):
        BFV_SUITE.load_public(pack_frames([unpack_frames(private.public_bytes())[0], *secrets]))


@pytest.mark.parametrize(("degree", "bits"), [(8192, [60, 60, 60, 60]), (4096, [60, 60])])
def test_public_keys_below_128_bits_are_refused_naming_n_and_bits(
    keys: tuple[BfvPrivate, BfvPublic], degree: int, bits: list[int]
) -> None:
    private, _ = keys
    weak = weak_public_key(sa.SCHEME_TYPE.BFV, degree, bits)
    tag = unpack_frames(private.public_bytes())[0]
    with pytest.raises(ProtocolError, match=r"N=8192, coefficient modulus 180 bits"):
        BFV_SUITE.load_public(pack_frames([tag, weak, weak]))


def test_the_pinned_bfv_rings_pass_the_128_bit_check() -> None:
    check_128_bit(RING_DEGREE, HIST_COEFF_BITS)
    check_128_bit(RING_DEGREE, SCORE_COEFF_BITS)
    with pytest.raises(ValueError, match="exceeds 218 bits"):
        BfvRing((60, 60, 60, 60), sa.Modulus(1 << 20))


def test_histograms_of_several_vectors_equal_one_at_a_time() -> None:
    private = BFV_SUITE.make_private()
    public = BFV_SUITE.load_public(private.public_bytes())
    rng = np.random.default_rng(5)
    bins = rng.integers(0, SLOTS, (700, 3)).astype(np.uint8)
    vectors = [rng.integers(0, 1 << 40, 700).astype(np.uint64) * (rng.random(700) < 0.4)
               for _ in range(3)]
    answers = public.histograms_many([private.encrypt_chunks(v, SLOTS) for v in vectors], bins,
                                     SLOTS)
    for vector, answer in zip(vectors, answers, strict=True):
        got = private.decrypt_histograms(answer, 3, SLOTS)
        expected = np.stack([np.bincount(bins[:, f], vector.astype(np.float64), SLOTS)
                             for f in range(3)])
        assert np.array_equal(got, expected.astype(np.uint64))


def test_all_zero_factors_give_an_encryption_of_zero(keys: tuple[BfvPrivate, BfvPublic]) -> None:
    """A party with no split in any tree multiplies by zeros: SEAL would refuse the transparent
    product, so the answer is a fresh encryption of zero instead."""
    private, public = keys
    selectors = np.ones(9000, dtype=np.uint64)
    product = public.multiply_slots(private.encrypt_slots(selectors), np.zeros(9000, np.uint64))
    assert not private.decrypt_slots(product).any()

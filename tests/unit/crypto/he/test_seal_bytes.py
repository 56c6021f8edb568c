"""Pins the SEAL byte bridge to TenSEAL 0.3.18 (SEAL 4): version, bit-identical round trips."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal as ts
import tenseal.sealapi as sa

from common.errors import ProtocolError
from crypto.he import seal_bytes
from crypto.he.bfv_ring import HIST_COEFF_BITS, HIST_PLAIN_BITS, RING_DEGREE, BfvRing


@pytest.fixture(scope="module")
def ring() -> BfvRing:
    return BfvRing(HIST_COEFF_BITS, sa.Modulus(1 << HIST_PLAIN_BITS))


@pytest.fixture(scope="module")
def ciphertext(ring: BfvRing) -> object:
    keys = sa.KeyGenerator(ring.ctx)
    public = sa.PublicKey()
    keys.create_public_key(public)
    ct = sa.Ciphertext(ring.ctx)
    sa.Encryptor(ring.ctx, public).encrypt(sa.Plaintext("7x^3 + 1"), ct)
    return ct


def test_the_pinned_versions() -> None:
    # A bump of either means re-checking the hand-written SEAL 4 stream in seal_bytes.
    assert ts.__version__ == "0.3.18"
    assert seal_bytes.SEAL_VERSION == (4, 3)


def test_every_stream_opens_with_seal_4s_header(ciphertext: object) -> None:
    head = seal_bytes.save(ciphertext)[:16]
    magic, size, major = int.from_bytes(head[:2], "little"), head[2], head[3]
    assert (magic, size, major) == (seal_bytes.SEAL_MAGIC, 16, seal_bytes.SEAL_MAJOR)
    assert int.from_bytes(head[8:16], "little") == len(seal_bytes.save(ciphertext))


def test_save_load_round_trip_is_bit_identical(ring: BfvRing, ciphertext: object) -> None:
    data = seal_bytes.save(ciphertext)
    loaded = seal_bytes.load(sa.Ciphertext(ring.ctx), ring.ctx, data)
    assert seal_bytes.save(loaded) == data


def test_hand_written_ciphertext_is_bit_identical_to_seals(
    ring: BfvRing, ciphertext: object
) -> None:
    raw = seal_bytes.ciphertext_raw(ciphertext)
    assert raw.shape == (2, len(HIST_COEFF_BITS) - 1, RING_DEGREE)
    rebuilt = seal_bytes.ciphertext_from_raw(ring.ctx, ring.first, raw)
    assert np.array_equal(seal_bytes.ciphertext_raw(rebuilt), raw)
    assert seal_bytes.save(rebuilt) == seal_bytes.save(ciphertext)


def test_seal_revalidates_hand_written_coefficients(ring: BfvRing, ciphertext: object) -> None:
    raw = seal_bytes.ciphertext_raw(ciphertext).copy()
    raw[0, 0, 0] = ring.primes[0]  # not a residue mod the first prime
    with pytest.raises(ProtocolError, match="refused"):
        seal_bytes.ciphertext_from_raw(ring.ctx, ring.first, raw)


def test_garbage_is_refused_as_a_protocol_error(ring: BfvRing) -> None:
    with pytest.raises(ProtocolError, match="ciphertext refused"):
        seal_bytes.load(sa.Ciphertext(ring.ctx), ring.ctx, b"\x5e\xa1garbage", "ciphertext")


def test_a_plaintext_built_from_raw_residues_is_the_same_plaintext() -> None:
    from crypto.he import lr_coeffs
    from crypto.he.lr import CkksLr
    from crypto.he.lr_arbiter import own_key
    from models.vlr import LR_PARAMS

    lr: CkksLr = own_key(LR_PARAMS)  # type: ignore[assignment]
    values = np.linspace(-5, 5, lr.slot_count)
    encoded = lr.encode(values, 2.0**30)
    raw = lr_coeffs.plain_raw(lr, encoded)
    rebuilt = seal_bytes.plaintext_from_raw(lr.seal, lr.top, raw, 2.0**30)
    assert rebuilt.is_ntt_form() and rebuilt.scale == 2.0**30
    assert np.array_equal(lr_coeffs.plain_raw(lr, rebuilt), raw)
    decoded = sa.CKKSEncoder(lr.seal).decode_double(rebuilt)
    assert np.allclose(decoded, values, atol=1e-6)
    raw[0, 0] = lr.primes[0]  # a residue not below its prime: SEAL refuses it on load
    with pytest.raises(ProtocolError):
        seal_bytes.plaintext_from_raw(lr.seal, lr.top, raw, 2.0**30)

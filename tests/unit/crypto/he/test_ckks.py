"""Tests for CKKS parameters, public contexts and the CKKS backend against its twin."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal as ts

from common.errors import ProtocolError
from crypto.he import (
    CKKS_SUITE,
    PRODUCTION_ENV,
    CkksBackend,
    CkksParams,
    PlainBackend,
    pack_frames,
    unpack_frames,
)
from crypto.he.ckks import load_public_context, make_context, public_context_bytes

SLOTS = CkksParams().slot_count


@pytest.fixture(scope="module")
def private() -> CkksBackend:
    return CkksBackend.create(CkksParams())


@pytest.fixture(scope="module")
def public(private: CkksBackend) -> CkksBackend:
    return CkksBackend.from_public_bytes(private.public_bytes())


def test_default_params_are_the_design_choice() -> None:
    params = CkksParams()
    assert (params.poly_modulus_degree, params.coeff_mod_bit_sizes) == (8192, (60, 40, 40, 60))
    assert params.scale == 2.0**40 and params.slot_count == 4096


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"poly_modulus_degree": 2048, "coeff_mod_bit_sizes": (27, 27)}, "not allowed"),
        ({"poly_modulus_degree": 4096, "coeff_mod_bit_sizes": (60, 40, 60)}, "exceeds 109"),
        ({"coeff_mod_bit_sizes": (60, 60, 60, 60)}, "exceeds 218 bits"),
        ({"poly_modulus_degree": 16384, "coeff_mod_bit_sizes": (60,) * 7 + (20,)}, "exceeds 438"),
        ({"poly_modulus_degree": 32768, "coeff_mod_bit_sizes": (60,) * 15}, "exceeds 881"),
        ({"coeff_mod_bit_sizes": (60, 60)}, "at least 3 primes"),
        ({"coeff_mod_bit_sizes": (61, 40, 40, 60)}, "20..60 bits"),
        ({"scale_bits": 50}, "scale_bits"),
    ],
)
def test_weak_or_malformed_params_are_refused(kwargs: dict[str, object], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        CkksParams(**kwargs)  # type: ignore[arg-type]


def test_larger_rings_within_their_budget_are_accepted() -> None:
    assert CkksParams(16384, (60, 40, 40, 40, 40, 60)).slot_count == 8192


def test_public_context_has_no_secret_key_but_keeps_galois_keys() -> None:
    ctx = make_context(CkksParams())
    loaded = load_public_context(public_context_bytes(ctx))
    assert ctx.is_private()
    assert not loaded.is_private() and loaded.has_galois_keys() and loaded.has_relin_keys()


def test_a_context_carrying_its_secret_key_is_refused() -> None:
    ctx = make_context(CkksParams(), galois_keys=False)
    with pytest.raises(ProtocolError, match="secret key"):
        load_public_context(ctx.serialize(save_secret_key=True))


def test_a_weak_received_context_is_refused() -> None:
    weak = ts.context(ts.SCHEME_TYPE.CKKS, 2048, coeff_mod_bit_sizes=[27, 27])
    weak.global_scale = 2.0**20
    with pytest.raises(ProtocolError, match="not allowed"):
        load_public_context(weak.serialize(save_secret_key=False))


def test_garbage_context_is_refused() -> None:
    with pytest.raises(ProtocolError):
        load_public_context(b"not a context")


def test_encrypt_add_decrypt_round_trip(private: CkksBackend, public: CkksBackend) -> None:
    a, b = np.linspace(-3, 3, SLOTS + 10), np.linspace(5, -5, SLOTS + 10)
    total = public.add([public.encrypt(a), public.encrypt(b)], plain=np.full(a.size, 0.5))
    assert np.allclose(private.decrypt(total), a + b + 0.5, atol=1e-6)


def test_public_backend_cannot_decrypt(public: CkksBackend) -> None:
    assert not public.can_decrypt
    with pytest.raises(PermissionError):
        public.decrypt(public.encrypt(np.ones(3)))


def test_backends_refuse_each_others_bytes(public: CkksBackend) -> None:
    twin = PlainBackend.for_testing()
    with pytest.raises(ProtocolError):
        public.add([twin.encrypt(np.ones(4))])
    with pytest.raises(ProtocolError):
        twin.decrypt(public.encrypt(np.ones(4)))


def test_tampered_ciphertext_is_refused(private: CkksBackend) -> None:
    frames = unpack_frames(private.encrypt(np.ones(4)))
    frames[1] = frames[1][:100] + bytes(50) + frames[1][150:]
    with pytest.raises(ProtocolError):
        private.decrypt(pack_frames(frames))


def _packed_reference(vector: np.ndarray, plains: np.ndarray) -> np.ndarray:
    """Slot-by-slot definition of masked_packed_products with zero masks (slow, obvious)."""
    groups, fold, slots = plains.shape
    width = slots // fold
    out = np.zeros((groups, slots))
    for s in range(0, slots, 97):  # a sample of slots keeps it quick
        for u in range(width):
            for k in range(fold):
                t = (s + u) % slots
                out[:, s] += vector[(t + k * width) % slots] * plains[:, k, t]
    return out


@pytest.mark.parametrize("fold", [1, 8, 64])
def test_packed_products_agree_between_ckks_and_twin(
    private: CkksBackend, public: CkksBackend, fold: int
) -> None:
    rng = np.random.default_rng(fold)
    vector, plains = rng.normal(size=SLOTS), rng.normal(size=(2, fold, SLOTS)) * 1e-3
    plains[1, 0] = 0.0  # a zero operand is skipped, not multiplied
    masks = np.zeros((2, SLOTS))
    twin = PlainBackend.for_testing()
    expected = twin.decrypt(
        twin.masked_packed_products(twin.encrypt(vector), twin.prepare(plains), masks)
    )
    got = private.decrypt(
        public.masked_packed_products(public.encrypt(vector), public.prepare(plains), masks)
    )
    assert np.allclose(got, expected, atol=1e-5)
    sampled = np.arange(0, SLOTS, 97)
    reference = _packed_reference(vector, plains)
    assert np.allclose(expected.reshape(2, SLOTS)[:, sampled], reference[:, sampled])


def test_all_zero_group_still_returns_the_mask(private: CkksBackend, public: CkksBackend) -> None:
    plains, masks = np.zeros((1, 4, SLOTS)), np.full((1, SLOTS), 7.0)
    blob = public.masked_packed_products(public.encrypt(np.ones(10)), public.prepare(plains), masks)
    assert np.allclose(private.decrypt(blob), 7.0, atol=1e-6)


def test_plain_twin_is_only_reachable_for_testing(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError):
        PlainBackend(SLOTS)
    assert CKKS_SUITE.name == "ckks"
    monkeypatch.setenv(PRODUCTION_ENV, "1")
    with pytest.raises(RuntimeError, match=PRODUCTION_ENV):
        PlainBackend.for_testing()
    with pytest.raises(RuntimeError, match=PRODUCTION_ENV):
        PlainBackend.suite_for_testing()


def test_ckks_loader_refuses_the_twins_context() -> None:
    with pytest.raises(ProtocolError):
        CKKS_SUITE.load_public(PlainBackend.for_testing().public_bytes())

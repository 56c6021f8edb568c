"""Tests for CKKS parameters, public contexts and the label-private LR context's plumbing."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal as ts

from common.errors import ProtocolError
from crypto.he import PRODUCTION_ENV, CkksParams, pack_frames, unpack_frames
from crypto.he.ckks import load_public_context, make_context, public_context_bytes
from crypto.he.lr import CkksLr
from crypto.he.lr_arbiter import CKKS_LR_SUITE, CkksLrArbiter
from crypto.he.lr_plain import PLAIN_LR_SUITE, PlainLr
from models.vlr import LR_PARAMS

SLOTS = CkksParams().slot_count


@pytest.fixture(scope="module")
def private() -> CkksLrArbiter:
    return CkksLrArbiter.create(LR_PARAMS)


@pytest.fixture(scope="module")
def public(private: CkksLrArbiter) -> CkksLr:
    return CkksLr.from_public_bytes(private.public_bytes())


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


def test_encrypt_add_decrypt_round_trip(private: CkksLrArbiter, public: CkksLr) -> None:
    a, b = np.linspace(-3, 3, SLOTS + 10), np.linspace(5, -5, SLOTS + 10)
    total = public.add([public.encrypt(a, 2.0**36), public.encrypt(b, 2.0**36)],
                       plain=np.full(a.size, 0.5))
    assert np.allclose(private.decrypt(total)[: a.size], a + b + 0.5, atol=1e-6)


def test_public_backend_cannot_decrypt(public: CkksLr) -> None:
    assert not public.can_decrypt
    with pytest.raises(PermissionError):
        public.decrypt(public.encrypt(np.ones(3), 2.0**36))


def test_backends_refuse_each_others_bytes(public: CkksLr) -> None:
    twin = PlainLr(LR_PARAMS)
    with pytest.raises(ProtocolError):
        public.add([twin.encrypt(np.ones(4), 2.0**36)])
    with pytest.raises(ProtocolError):
        twin.decrypt(public.encrypt(np.ones(4), 2.0**36))


def test_tampered_ciphertext_is_refused(private: CkksLrArbiter) -> None:
    frames = unpack_frames(private.encrypt(np.ones(4), 2.0**36))
    frames[1] = frames[1][:100] + bytes(50) + frames[1][150:]
    with pytest.raises(ProtocolError):
        private.decrypt(pack_frames(frames))


def test_plain_twin_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CKKS_LR_SUITE.name == "ckks" and PLAIN_LR_SUITE.name == "plain"
    monkeypatch.setenv(PRODUCTION_ENV, "1")
    with pytest.raises(RuntimeError, match=PRODUCTION_ENV):
        PLAIN_LR_SUITE.make_arbiter(LR_PARAMS)


def test_ckks_loader_refuses_the_twins_context() -> None:
    with pytest.raises(ProtocolError):
        CKKS_LR_SUITE.load_public(PlainLr(LR_PARAMS).public_bytes())

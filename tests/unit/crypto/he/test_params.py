"""Tests for the one 128-bit check and the one loader every received TenSEAL context passes."""

from __future__ import annotations

import pytest
import tenseal as ts

from common.errors import ProtocolError
from crypto.he import MAX_COEFF_BITS_128, check_128_bit
from crypto.he.ckks import load_public_context
from crypto.he.lr import CkksLr
from crypto.he.params import load_tenseal_context
from tests.unit.crypto.he.weak import over_bound_ckks_context


def test_the_table_is_the_homomorphic_encryption_standard() -> None:
    assert MAX_COEFF_BITS_128 == {4096: 109, 8192: 218, 16384: 438, 32768: 881}


@pytest.mark.parametrize(("n", "bits"), [(4096, (60, 49)), (8192, (60, 60, 60)),
                                         (8192, (55, 55, 50, 55)), (16384, (60,) * 7)])
def test_rings_within_the_bound_pass(n: int, bits: tuple[int, ...]) -> None:
    check_128_bit(n, bits)


@pytest.mark.parametrize(
    ("n", "bits", "message"),
    [
        (2048, (27, 27), r"poly_modulus_degree 2048 \(coefficient modulus 54 bits\) is not"),
        (4096, (60, 60), "coefficient modulus of 120 bits exceeds 109 bits, the 128-bit security "
                         "limit at poly_modulus_degree 4096"),
        (8192, (60, 60, 60, 60), "240 bits exceeds 218 bits.*poly_modulus_degree 8192"),
    ],
)
def test_rings_below_128_bits_are_refused_naming_n_and_bits(
    n: int, bits: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_128_bit(n, bits)


def test_the_training_loader_names_n_and_bits_of_a_weak_context() -> None:
    weak = ts.context(ts.SCHEME_TYPE.CKKS, 2048, coeff_mod_bit_sizes=[27, 27])
    weak.global_scale = 2.0**20
    with pytest.raises(ProtocolError, match=r"2048 \(coefficient modulus 54 bits\)"):
        CkksLr.from_public_bytes(weak.serialize(save_secret_key=False))


def test_a_context_above_the_bound_is_refused_on_load() -> None:
    # TenSEAL cannot make one; the rewritten proto is refused (by SEAL's own tc128 check in
    # TenSEAL 0.3.18, before ours) as a ProtocolError at every loader.
    data = over_bound_ckks_context(4096, (60, 60))
    with pytest.raises(ProtocolError, match="encryption parameters are not set correctly"):
        load_public_context(data)
    with pytest.raises(ProtocolError, match="refused"):
        load_tenseal_context(data, scheme="CKKS", private=False, what="test context")


def test_the_loader_refuses_the_wrong_scheme() -> None:
    bfv = ts.context(ts.SCHEME_TYPE.BFV, 4096, plain_modulus=1032193)
    with pytest.raises(ProtocolError, match="a BFV context, expected CKKS"):
        load_tenseal_context(bfv.serialize(save_secret_key=False), scheme="CKKS",
                             private=False, what="test context")


def test_the_loader_enforces_the_secret_key_rule_both_ways() -> None:
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, 4096, coeff_mod_bit_sizes=[60, 49])
    with pytest.raises(ProtocolError, match="carries a secret key"):
        load_tenseal_context(ctx.serialize(save_secret_key=True), scheme="CKKS",
                             private=False, what="test context")
    with pytest.raises(ProtocolError, match="has no secret key"):
        load_tenseal_context(ctx.serialize(save_secret_key=False), scheme="CKKS",
                             private=True, what="test context")
    assert load_tenseal_context(ctx.serialize(save_secret_key=True), scheme="CKKS",
                                private=True, what="test context").is_private()

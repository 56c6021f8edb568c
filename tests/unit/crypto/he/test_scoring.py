"""Tests for the bank's scoring context: every load is checked; packed sums decrypt exactly."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal as ts

from common.errors import ProtocolError
from crypto.he import scoring
from tests.unit.crypto.he.weak import over_bound_ckks_context


@pytest.fixture(scope="module")
def bank() -> ts.Context:
    return scoring.new_private_context()


def test_private_and_public_loads_keep_the_secret_key_where_it_belongs(bank: ts.Context) -> None:
    assert scoring.load_context(scoring.private_bytes(bank), private=True).is_private()
    assert not scoring.load_context(scoring.public_bytes(bank), private=False).is_private()
    with pytest.raises(ProtocolError, match="scoring context refused: it carries a secret key"):
        scoring.load_context(scoring.private_bytes(bank), private=False)
    with pytest.raises(ProtocolError, match="scoring context refused: it has no secret key"):
        scoring.load_context(scoring.public_bytes(bank), private=True)


@pytest.mark.parametrize("private", [True, False])
def test_a_weak_scoring_context_is_refused_naming_n_and_bits(private: bool) -> None:
    weak = ts.context(ts.SCHEME_TYPE.CKKS, 2048, coeff_mod_bit_sizes=[27, 27])
    data = weak.serialize(save_secret_key=private)
    with pytest.raises(ProtocolError, match=r"scoring context refused: poly_modulus_degree 2048 "
                                            r"\(coefficient modulus 54 bits\) is not allowed"):
        scoring.load_context(data, private=private)


def test_a_scoring_context_above_the_bound_is_refused() -> None:
    with pytest.raises(ProtocolError, match="scoring context refused"):
        scoring.load_context(over_bound_ckks_context(4096, (60, 60)), private=False)


def test_garbage_is_refused(bank: ts.Context) -> None:
    with pytest.raises(ProtocolError, match="scoring context refused"):
        scoring.load_context(b"not a context", private=False)
    with pytest.raises(ProtocolError, match="scoring ciphertext refused"):
        scoring.add_ciphertexts(bank, [[b"garbage"]])


def test_parties_partials_sum_and_decrypt(bank: ts.Context) -> None:
    public = scoring.load_context(scoring.public_bytes(bank), private=False)
    n = scoring.IDS_PER_CIPHERTEXT + 5
    a, b = np.linspace(-2, 2, n), np.linspace(1, -1, n)
    covered_a, covered_b = np.ones(n), (np.arange(n) % 2).astype(float)
    sums = scoring.add_ciphertexts(public, [scoring.encrypt_partials(public, a, covered_a),
                                            scoring.encrypt_partials(public, b, covered_b)])
    logits, covered = scoring.decrypt_sums(bank, sums, n)
    assert np.allclose(logits, a + b, atol=1e-4)
    assert np.array_equal(covered, 1 + np.arange(n) % 2)

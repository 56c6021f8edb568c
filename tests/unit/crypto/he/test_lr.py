"""The label-private LR kernels against numpy, and the arbiter's exact decryptions."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from common.errors import ProtocolError
from crypto.he.lr import CkksLr, baby_steps, diagonals, period_for, replicate
from crypto.he.lr_arbiter import CkksLrArbiter, own_key
from crypto.he.params import CkksParams

PARAMS = CkksParams(8192, (53, 52, 53, 60), 36)
SW, SX = 2.0**36, 2.0**22


@pytest.fixture(scope="module")
def pair() -> tuple[CkksLrArbiter, CkksLr]:
    arbiter = CkksLrArbiter.create(PARAMS)
    return arbiter, CkksLr.from_public_bytes(arbiter.public_bytes())


def test_periods_and_baby_steps() -> None:
    assert [period_for(w) for w in (1, 2, 3, 31, 32, 300)] == [1, 2, 4, 32, 32, 512]
    assert [baby_steps(p) for p in (1, 2, 4, 32, 512)] == [1, 2, 2, 8, 32]
    with pytest.raises(ValueError):
        diagonals(np.zeros((10, 40)), 32, 4096)


@pytest.mark.parametrize(("rows", "width"), [(4096, 300), (1000, 7), (64, 1)])
def test_forward_and_gradient_match_numpy(pair: tuple[CkksLrArbiter, CkksLr], rows: int,
                                          width: int) -> None:
    arbiter, party = pair
    rng = np.random.default_rng(width)
    x = rng.normal(size=(rows, width))
    w, d = rng.normal(size=width) * 0.3, rng.normal(size=rows)
    period = period_for(width)
    prepared = party.prepare(x, period, SX)
    enc_w = party.encrypt(replicate(w, period, party.slot_count), SW)
    u = arbiter.decrypt(party.forward(enc_w, prepared))
    # X's diagonals are encoded at scale SX: rounding each of the N coefficients moves each slot
    # by sqrt(N/12)/SX (sd), so each u_i is off by sqrt(N/12)·‖w‖/SX: 3.2e-5 at 300 columns, a
    # fixed error (fresh keys change it by 1.4e-6) whose largest row reached 0.95 of the old
    # atol 1e-4. 6 of them bound the rounding on 4,096 rows; a wrong kernel is off by O(1).
    rounding = np.sqrt(PARAMS.poly_modulus_degree / 12) * np.linalg.norm(w) / SX
    atol = max(1e-4, 6 * rounding)
    assert np.allclose(u[:rows], x @ w, atol=atol) and np.allclose(u[rows:], 0, atol=atol)
    g = arbiter.decrypt(party.gradient(party.encrypt(d, SW * SX), prepared))
    expected = replicate(x.T @ d, period, party.slot_count)
    assert np.allclose(g, expected, atol=1e-2)  # every copy, and zero beyond the width


def test_refresh_turns_a_masked_gradient_into_an_exact_step(
    pair: tuple[CkksLrArbiter, CkksLr],
) -> None:
    arbiter, party = pair
    rng = np.random.default_rng(3)
    g = rng.normal(size=party.slot_count) * 100
    enc = party.encrypt(g, SW * SX * SX)
    masked, masks = party.mask(enc, 2.0**57)
    seen = arbiter.decrypt(masked)  # what the arbiter could decode if it tried
    assert np.median(np.abs(seen)) > 2.0**50 and np.corrcoef(seen, g)[0, 1] < 0.1
    f = 4096 / 0.15
    sent = party.relabel(masked, f)
    fresh = arbiter.refresh(sent, SW)
    assert party.scales(fresh) == [SW]
    ratio = Fraction(SW) / Fraction(party.scales(sent)[0])
    step = arbiter.decrypt(party.unmask(fresh, masks, ratio))
    assert np.max(np.abs(step - g / f)) < 1e-6  # 13 bits if masks were doubles; exact here


def test_refresh_refuses_to_raise_a_scale_and_odd_targets(
    pair: tuple[CkksLrArbiter, CkksLr],
) -> None:
    arbiter, party = pair
    enc = party.encrypt(np.ones(4), SW)
    with pytest.raises(ProtocolError, match="only lowers"):
        arbiter.refresh(enc, 2.0**40)
    with pytest.raises(ProtocolError, match="outside"):
        arbiter.refresh(enc, 2.0**10)


def test_reencrypt_hands_a_value_to_its_owner_only(pair: tuple[CkksLrArbiter, CkksLr]) -> None:
    arbiter, party = pair
    mine = own_key(PARAMS)
    w = np.linspace(-3, 3, 300)
    masked, masks = party.mask(party.encrypt(w, SW), 2.0**50)
    answer = arbiter.reencrypt(masked, mine.public_bytes())
    assert np.allclose(mine.decrypt(mine.unmask(answer, masks))[:300], w, atol=1e-6)
    assert not np.allclose(arbiter.decrypt(answer)[:300], w, atol=1.0)  # not under A's key
    other = own_key(CkksParams(8192, (60, 40, 40, 60), 40))
    with pytest.raises(ProtocolError, match="ring"):
        arbiter.reencrypt(masked, other.public_bytes())


def test_square_sum_gives_the_taylor_loss_terms(pair: tuple[CkksLrArbiter, CkksLr]) -> None:
    arbiter, party = pair
    rng = np.random.default_rng(4)
    u, z = rng.normal(size=5000) * 3, np.sign(rng.normal(size=5000))
    enc = party.encrypt(u, 2.0**30)
    total = arbiter.decrypt(party.square_sum(enc, -4 * z))
    assert np.allclose(total, np.sum(u * u - 4 * z * u), rtol=1e-6)


def test_a_mask_that_would_wrap_the_modulus_is_refused(pair: tuple[CkksLrArbiter, CkksLr]) -> None:
    _, party = pair
    enc = party.encrypt(np.ones(4), SW * SX * SX)  # 2^80
    party.mask(enc, 2.0**70)  # 150 bits: fits
    with pytest.raises(ProtocolError, match="needs 161 bits; the ring has 156"):
        party.mask(enc, 2.0**80)

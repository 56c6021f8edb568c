"""SecureBoost's BFV parameter sets, noise bounds, and one ring's bridge between SEAL and numpy."""

from __future__ import annotations

import math
import secrets
from typing import Any

import numpy as np
import tenseal.sealapi as sa

from common.errors import ProtocolError
from crypto.he import seal_bytes
from crypto.he.params import check_128_bit

RING_DEGREE = 8192
HIST_COEFF_BITS = (60, 60, 60)  # data primes (60, 60) + special prime; 180 <= 218 bits
HIST_PLAIN_BITS = 59  # t = 2^59: packed G + 2^k H sums live in (-t/2, t/2)
SCORE_COEFF_BITS = (55, 55, 50, 55)  # data primes 160 bits + special; 215 <= 218 bits
SCORE_PLAIN_BITS = 40  # a batching prime t = 1 mod 2N
STATISTICAL_BITS = 40
NOISE_SIGMA = 3.2  # SEAL's error distribution
TAIL_SIGMAS = 7.5  # P(|sub-Gaussian sum| > 7.5 sigma) < 2^-40
FRESH_NOISE_BOUND = 1 << 19  # |e u + e1 + e2 s| of a public-key encryption of zero (6 sigma * 2N)


def product_noise_bound(terms: int, plain_bound: float) -> float:
    """|noise| of sum_j p_j (e + eps)_j over `terms` plaintext terms |p_j| <= plain_bound, known
    to L: its own error e (sub-Gaussian, sigma 3.2; bounded with probability 1 - 2^-40) and the
    encoding rounding |eps| <= 1/2 (deterministic, so bounded in the worst case)."""
    return plain_bound * (0.5 * terms + TAIL_SIGMAS * NOISE_SIGMA * math.sqrt(terms))


def chunk_width(slots: int) -> int:
    """Rows per histogram ciphertext when every feature has `slots` bin slots."""
    if not 2 <= slots <= 256:
        raise ValueError(f"{slots} bin slots: need 2..256")
    return RING_DEGREE // slots


def histogram_targets(slots: int) -> np.ndarray:
    """Coefficients holding the bin sums of one feature's product."""
    width = chunk_width(slots)
    return np.arange(slots) * width + width - 1


class BfvRing:
    """One BFV parameter set: SEAL context plus the raw-coefficient bridge to numpy."""

    def __init__(self, coeff_bits: tuple[int, ...], plain: Any) -> None:
        check_128_bit(RING_DEGREE, coeff_bits)
        self.coeff_bits = coeff_bits
        parms = sa.EncryptionParameters(sa.SCHEME_TYPE.BFV)
        parms.set_poly_modulus_degree(RING_DEGREE)
        parms.set_coeff_modulus(sa.CoeffModulus.Create(RING_DEGREE, list(coeff_bits)))
        parms.set_plain_modulus(plain)
        self.ctx = sa.SEALContext(parms, True, sa.SEC_LEVEL_TYPE.TC128)
        if not self.ctx.parameters_set():
            raise ValueError(f"BFV parameters refused: {self.ctx.parameters_error_message()}")
        first = self.ctx.first_context_data()
        self.first = self.ctx.first_parms_id()
        self.primes = np.array([m.value() for m in first.parms().coeff_modulus()], np.uint64)
        self.t = int(parms.plain_modulus().value())
        self.evaluator = sa.Evaluator(self.ctx)

    def public_key(self, data: bytes) -> Any:
        """Load L's public key; SEAL refuses a key made for any other parameters."""
        return seal_bytes.load(
            sa.PublicKey(), self.ctx, data,
            f"BFV public key (expected N={RING_DEGREE}, coefficient modulus "
            f"{sum(self.coeff_bits)} bits {list(self.coeff_bits)})",
        )

    def ciphertext(self, data: bytes) -> Any:
        """Load and check a received ciphertext: fresh level, two polynomials, coefficient form."""
        ct = seal_bytes.load(sa.Ciphertext(self.ctx), self.ctx, data)
        if ct.size() != 2 or ct.is_ntt_form() or list(ct.parms_id()) != list(self.first):
            raise ProtocolError("ciphertext is not a fresh two-polynomial BFV ciphertext")
        return ct

    def raw(self, ct: Any) -> np.ndarray:
        """Coefficients (2, primes, N) of a ciphertext."""
        return seal_bytes.ciphertext_raw(ct)

    def from_raw(self, raw: np.ndarray) -> Any:
        """A fresh-level SEAL ciphertext holding `raw` (2, primes, N)."""
        return seal_bytes.ciphertext_from_raw(self.ctx, self.first, raw)

    def uniform(self, shape: tuple[int, ...]) -> np.ndarray:
        """Uniform residues mod each prime (last axis = primes), by rejection, from `secrets`."""
        shifts = np.array([64 - int(p).bit_length() for p in self.primes], dtype=np.uint64)
        out = random_u64(int(np.prod(shape))).reshape(shape) >> shifts
        bad = out >= self.primes
        while bad.any():
            redo = random_u64(int(bad.sum())) >> np.broadcast_to(shifts, shape)[bad]
            out[bad] = redo
            bad = out >= self.primes
        return out

    def signed(self, values: np.ndarray) -> np.ndarray:
        """Residues (..., primes) of int64 values."""
        v = values[..., None]
        return np.where(v < 0, self.primes.astype(np.int64) + v, v).astype(np.uint64)

    def flood(self, raw: np.ndarray, positions: np.ndarray, bound: float) -> None:
        """c0 += uniform mod q off `positions`; on them += uniform |x| < 2^40 * bound."""
        bits = math.ceil(math.log2(bound + 1.0)) + STATISTICAL_BITS
        limit = math.prod(int(p) for p in self.primes) // (2 * self.t)
        if (1 << bits) + bound + FRESH_NOISE_BOUND >= limit:
            raise ValueError(f"flooding needs {bits} bits; the modulus leaves too few")
        mask = self.uniform((RING_DEGREE, self.primes.size)).T  # (primes, N)
        if bits < 62:
            flood = (random_u64(positions.size) >> np.uint64(63 - bits)).astype(np.int64)
            mask[:, positions] = self.signed(flood - (np.int64(1) << np.int64(bits))).T
        else:  # wider than int64 (scoring): Python integers, a few thousand per ciphertext
            draws = [secrets.randbits(bits + 1) - (1 << bits) for _ in range(positions.size)]
            for j, prime in enumerate(self.primes.tolist()):
                mask[j, positions] = np.array([d % prime for d in draws], dtype=np.uint64)
        raw[0] = add_mod(raw[0], mask, self.primes[:, None])


def random_u64(count: int) -> np.ndarray:
    """`count` uniform 64-bit words from `secrets`."""
    return np.frombuffer(secrets.token_bytes(8 * count), dtype="<u8").astype(np.uint64)


def random_nonzero(count: int, modulus: int) -> np.ndarray:
    """Uniform residues in [1, modulus) from `secrets` (rejection sampling)."""
    shift = np.uint64(64 - modulus.bit_length())
    out = random_u64(count) >> shift
    bad = (out == 0) | (out >= modulus)
    while bad.any():
        out[bad] = random_u64(int(bad.sum())) >> shift
        bad = (out == 0) | (out >= modulus)
    return out


def add_mod(a: np.ndarray, b: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(a + b) mod q for a, b < q < 2^61 (no wrap)."""
    s: np.ndarray = a + b
    return np.where(s >= q, s - q, s)

"""Exact integer polynomials for label-private LR: coefficient masks and the arbiter's rescaling.

A mask that hides a value v statistically must be 2^40 times larger than v, and float64 keeps 53
bits: a mask drawn, encoded and removed as doubles leaves v with 13 bits (measured: 27% error on a
weight step). So masks are drawn as integer polynomials (uniform coefficients from `secrets`) and
added to the ciphertext's first polynomial; whoever removes one subtracts exactly the same
integers, or exactly round(ratio * mask) after the arbiter rescaled by `ratio`, which leaves one
unit of rounding per coefficient. SEAL's NTT is reached through `Evaluator.transform_{to,from}_
ntt_inplace` on ciphertexts built by `crypto.he.seal_bytes`; c1 is set to 1 in those holders
because SEAL refuses a transparent ciphertext.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from crypto.he import seal_bytes


def modulus(primes: Sequence[int]) -> int:
    out = 1
    for q in primes:
        out *= q
    return out


def to_ntt(lr: Any, coeffs: Sequence[int]) -> np.ndarray:
    """(primes, N) NTT-form residues of an integer polynomial at the top level."""
    res = np.array([[c % q for c in coeffs] for q in lr.primes], dtype=np.uint64)
    holder = seal_bytes.ciphertext_from_raw(lr.seal, lr.top, np.stack([res, np.ones_like(res)]))
    lr.evaluator.transform_to_ntt_inplace(holder)
    out: np.ndarray = seal_bytes.ciphertext_raw(holder, polys=1)[0]
    return out


def from_ntt(lr: Any, raw: np.ndarray) -> list[int]:
    """Centred integer coefficients of NTT-form residues (primes, N) at the top level."""
    holder = seal_bytes.ciphertext_from_raw(lr.seal, lr.top, np.stack([raw, np.ones_like(raw)]),
                                            ntt=True)
    lr.evaluator.transform_from_ntt_inplace(holder)
    residues = seal_bytes.ciphertext_raw(holder, polys=1)[0]
    big = modulus(lr.primes)
    total = [0] * residues.shape[1]
    for i, q in enumerate(lr.primes):
        rest = big // q
        factor = rest * pow(rest, -1, q)
        total = [t + r * factor for t, r in zip(total, residues[i].tolist(), strict=True)]
    half = big // 2
    out = []
    for t in total:
        t %= big
        out.append(t - big if t > half else t)
    return out


def plain_raw(lr: Any, pt: Any) -> np.ndarray:
    """(primes, N) residues of a top-level NTT-form plaintext."""
    arr = pt.dyn_array()
    count = arr.size()
    flat = np.fromiter(map(arr.__getitem__, range(count)), dtype=np.uint64, count=count)
    return flat.reshape(len(lr.primes), -1)


def shift(lr: Any, ct: Any, raw_ntt: np.ndarray, sign: int) -> Any:
    """ct with `sign` * the polynomial `raw_ntt` added to its first component (same scale)."""
    pt = seal_bytes.plaintext_from_raw(lr.seal, lr.top, raw_ntt, float(ct.scale))
    if sign > 0:
        lr.evaluator.add_plain_inplace(ct, pt)
    else:
        lr.evaluator.sub_plain_inplace(ct, pt)
    return ct


def uniform_coefficients(count: int, bound: int) -> list[int]:
    """Integers uniform in [-bound, bound] from the OS's CSPRNG."""
    if bound < 1:
        raise ValueError("mask bound must be >= 1")
    span = 2 * bound + 1
    return [secrets.randbelow(span) - bound for _ in range(count)]


def rounded(coeffs: Sequence[int], ratio: Fraction) -> list[int]:
    """round(ratio * c) for every coefficient, in exact integers (ties up)."""
    num, den = ratio.numerator, ratio.denominator
    return [(2 * c * num + den) // (2 * den) for c in coeffs]

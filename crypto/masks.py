"""Random additive masks from the OS's CSPRNG (float64, and integer masks orthogonal to a weight
vector for encrypted inner products; the exact integer masks of label-private
LR are `crypto.he.lr_coeffs.uniform_coefficients`)."""

from __future__ import annotations

import math
import secrets

import numpy as np


def uniform_mask(shape: int | tuple[int, ...], bound: float) -> np.ndarray:
    """float64 values uniform in [-bound, bound) drawn from `secrets` (never numpy's RNG)."""
    if not (math.isfinite(bound) and bound > 0):
        raise ValueError(f"mask bound must be a positive finite number, got {bound}")
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    count = math.prod(dims)
    raw = np.frombuffer(secrets.token_bytes(8 * count), dtype="<u8")
    unit = (raw >> np.uint64(11)).astype(np.float64) * 2.0**-53  # 53 random bits in [0, 1)
    return ((2.0 * unit - 1.0) * bound).reshape(dims)


def orthogonal_mask(weights: np.ndarray, modulus_bits: int) -> np.ndarray:
    """Residues m mod 2^modulus_bits, uniform among those with sum_b weights_b m_b = 0 mod
    2^modulus_bits: added to a vector S, they reveal sum_b weights_b S_b and nothing else of S.

    Let 2^v be the largest power of two dividing every weight; one weight w* with w*/2^v odd is
    invertible mod 2^k, so every other m_b is uniform and m* solves the constraint."""
    if not 1 <= modulus_bits <= 63:
        raise ValueError(f"modulus of {modulus_bits} bits: need 1..63")
    w = np.asarray(weights, dtype=np.int64).reshape(-1)
    modulus = 1 << modulus_bits
    raw = np.frombuffer(secrets.token_bytes(8 * w.size), dtype="<u8") % np.uint64(modulus)
    out = [int(r) for r in raw]
    nonzero = [int(x) % modulus for x in w.tolist()]
    if not any(nonzero):
        return np.asarray(out, dtype=np.uint64)
    v = min((x & -x).bit_length() - 1 for x in nonzero if x)
    star = next(i for i, x in enumerate(nonzero) if x and (x >> v) & 1)
    rest = sum((x >> v) * m for i, (x, m) in enumerate(zip(nonzero, out, strict=True))
               if i != star)
    free = secrets.randbelow(1 << v) << (modulus_bits - v) if v else 0  # all 2^v solutions
    out[star] = (-rest * pow(nonzero[star] >> v, -1, modulus) + free) % modulus
    return np.asarray(out, dtype=np.uint64)

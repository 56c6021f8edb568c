"""Random additive masks from the OS's CSPRNG, and rounding of values the arbiter decrypts."""

from __future__ import annotations

import math
import secrets

import numpy as np

# Masks are uniform in [-bound, bound). 2^20 hides gradients of magnitude ~1 to a statistical
# distance of ~1e-6 per value, while (mask + gradient) * 2^40 stays far inside CKKS's modulus and
# float64 keeps ~1e-10 absolute resolution on it.
DEFAULT_MASK_BOUND = 2.0**20
# CKKS decryption noise on our gradients is ~1e-8; rounding to 1e-6 removes it before the values
# leave the arbiter (exact CKKS decryptions leak key bits to whoever sees them).
DEFAULT_DECIMALS = 6


def uniform_mask(shape: int | tuple[int, ...], bound: float = DEFAULT_MASK_BOUND) -> np.ndarray:
    """float64 values uniform in [-bound, bound) drawn from `secrets` (never numpy's RNG)."""
    if not (math.isfinite(bound) and bound > 0):
        raise ValueError(f"mask bound must be a positive finite number, got {bound}")
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    count = math.prod(dims)
    raw = np.frombuffer(secrets.token_bytes(8 * count), dtype="<u8")
    unit = (raw >> np.uint64(11)).astype(np.float64) * 2.0**-53  # 53 random bits in [0, 1)
    return ((2.0 * unit - 1.0) * bound).reshape(dims)


def round_decrypted(values: np.ndarray, decimals: int = DEFAULT_DECIMALS) -> np.ndarray:
    """Round decrypted values to `decimals` places before they leave the arbiter."""
    if not 0 <= decimals <= 12:
        raise ValueError(f"decimals must be 0..12, got {decimals}")
    out = np.round(np.asarray(values, dtype=np.float64), decimals)
    if not np.all(np.isfinite(out)):
        raise ValueError("decrypted values are not finite")
    return out

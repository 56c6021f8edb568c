"""Random additive masks from the OS's CSPRNG, and rounding of values the arbiter decrypts."""

from __future__ import annotations

import math
import secrets

import numpy as np

# Masks are uniform in [-bound, bound). 2^30 hides a masked value v (VLR sends X^T d over a
# batch, |v| <~ 1e4) to a statistical distance of ~|v| / 2^31 <~ 5e-6, while (v + mask) * 2^40
# stays far inside CKKS's 100-bit modulus after one rescale and float64 keeps ~2e-7 resolution.
DEFAULT_MASK_BOUND = 2.0**30
# CKKS noise on decrypted VLR values is ~3e-8 of their size (~5e-5 on sums over 4096 rows of
# 300 features); rounding to 1e-3 drops it before values leave the arbiter (exact CKKS
# decryptions leak key bits to whoever sees them) and costs a gradient mean only ~1e-7.
DEFAULT_DECIMALS = 3


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

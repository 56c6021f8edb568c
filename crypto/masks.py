"""Random additive masks from the OS's CSPRNG (float64; the exact integer masks of label-private
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

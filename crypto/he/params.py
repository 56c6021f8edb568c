"""Ring parameters, the one 128-bit security check, and the one loader of received contexts.

Every HE context a party makes or loads passes `check_128_bit`: the training CKKS context (VLR),
SecureBoost's two BFV key pairs, and the bank's scoring context. `load_tenseal_context` is the
only place a serialised TenSEAL context is parsed; it also refuses a context carrying a secret key
where only a public one is expected (and one without where the owner's key file is read).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import tenseal as ts

from common.errors import ProtocolError

# Largest total coefficient-modulus size (bits) at 128-bit classical security, by ring degree
# (HomomorphicEncryption.org standard, the table SEAL enforces as sec_level_type::tc128).
MAX_COEFF_BITS_128: dict[int, int] = {4096: 109, 8192: 218, 16384: 438, 32768: 881}


def check_128_bit(poly_modulus_degree: int, coeff_mod_bit_sizes: Sequence[int]) -> None:
    """Raise ValueError, naming N and the modulus bits, unless the ring gives 128-bit security."""
    n, total = poly_modulus_degree, sum(coeff_mod_bit_sizes)
    if n not in MAX_COEFF_BITS_128:
        raise ValueError(
            f"poly_modulus_degree {n} (coefficient modulus {total} bits) is not allowed: "
            f"128-bit security is only configured for {sorted(MAX_COEFF_BITS_128)}"
        )
    limit = MAX_COEFF_BITS_128[n]
    if total > limit:
        raise ValueError(
            f"coefficient modulus of {total} bits exceeds {limit} bits, the 128-bit security "
            f"limit at poly_modulus_degree {n}"
        )


@dataclass(frozen=True)
class Ring:
    """Scheme, ring degree and coefficient-modulus primes (bits) of a TenSEAL context."""

    scheme: str
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]

    @classmethod
    def of_context(cls, ctx: ts.Context) -> Ring:
        parms = ctx.seal_context().data.key_context_data().parms()
        bits = tuple(int(m.bit_count()) for m in parms.coeff_modulus())
        return cls(str(parms.scheme().name), int(parms.poly_modulus_degree()), bits)


def load_tenseal_context(data: bytes, *, scheme: str, private: bool, what: str) -> ts.Context:
    """Parse a serialised context and refuse it unless it is `scheme`, 128-bit secure, and
    carries a secret key exactly when `private` (a public load never accepts a secret key)."""
    try:
        ctx = ts.context_from(data)
    except Exception as err:  # noqa: BLE001 - tenseal raises bare exceptions on bad bytes
        raise ProtocolError(f"{what} refused: not a serialized TenSEAL context: {err}") from err
    if ctx.is_private() != private:
        raise ProtocolError(
            f"{what} refused: it carries a secret key where only a public context is expected"
            if not private
            else f"{what} refused: it has no secret key"
        )
    ring = Ring.of_context(ctx)
    if ring.scheme != scheme:
        raise ProtocolError(f"{what} refused: a {ring.scheme} context, expected {scheme}")
    try:
        check_128_bit(ring.poly_modulus_degree, ring.coeff_mod_bit_sizes)
    except ValueError as err:
        raise ProtocolError(f"{what} refused: {err}") from err
    return ctx


@dataclass(frozen=True)
class CkksParams:
    """CKKS parameters, refused at construction unless they give 128-bit security."""

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40, 40, 60)
    scale_bits: int = 40

    def __post_init__(self) -> None:
        object.__setattr__(self, "coeff_mod_bit_sizes", tuple(self.coeff_mod_bit_sizes))
        n, bits = self.poly_modulus_degree, self.coeff_mod_bit_sizes
        if n not in MAX_COEFF_BITS_128:
            check_128_bit(n, bits)
        if len(bits) < 3:
            raise ValueError(
                f"coeff_mod_bit_sizes {list(bits)} needs at least 3 primes "
                "(data prime, one rescaling prime, special prime)"
            )
        if any(b < 20 or b > 60 for b in bits):
            raise ValueError(f"coeff_mod_bit_sizes {list(bits)}: every prime must be 20..60 bits")
        check_128_bit(n, bits)
        if not 20 <= self.scale_bits <= min(bits[1:-1]) or self.scale_bits >= bits[0]:
            raise ValueError(
                f"scale_bits {self.scale_bits} must be >= 20, at most the rescaling primes "
                f"({min(bits[1:-1])} bits) and below the first prime ({bits[0]} bits)"
            )

    @property
    def slot_count(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def scale(self) -> float:
        return float(2**self.scale_bits)

    @classmethod
    def of_context(cls, ctx: ts.Context) -> CkksParams:
        """Read (and so re-validate) the parameters of a received context."""
        ring = Ring.of_context(ctx)
        try:
            scale = float(ctx.global_scale)
        except ValueError as err:
            raise ValueError("context carries no global scale") from err
        scale_bits = round(math.log2(scale))
        if 2.0**scale_bits != scale:
            raise ValueError(f"context scale {scale} is not a power of two")
        return cls(ring.poly_modulus_degree, ring.coeff_mod_bit_sizes, scale_bits)

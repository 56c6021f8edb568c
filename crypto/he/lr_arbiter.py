"""The arbiter's two decryptions in label-private LR, done on exact integers, never on doubles.

A masked value v + r with |r| >= 2^40 |v| cannot be decoded to float64 and masked again without
destroying v (53 bits of mantissa), so the arbiter never decodes. It decrypts to the plaintext
polynomial (integers mod Q, exact) and either
* `refresh`: lifts the coefficients to integers (inverse NTT through SEAL, CRT over the primes),
  divides them by (scale / target) with rounding, and encrypts the result afresh at the top level
  under its own key, at scale `target`. The party that masked the value removes its mask from the
  new ciphertext; the arbiter saw only v + r, the party sees only ciphertexts. Rounding costs one
  unit of the target scale per coefficient. This is how a gradient at scale S_w * S_x^2 comes back
  as a weight step at S_w without a single rescale, and how validation logits come back at a
  scale that leaves room for squaring.
* `reencrypt`: encrypts the same plaintext under the requesting party's own key (same ring, so
  the same parms_id); the party removes its mask and decrypts with its own key. What it learns is
  the value plus fresh encryption noise it does not know, never an exact decryption under the
  arbiter's key (which would give away the arbiter's secret key).

SEAL's inverse and forward NTT are reached through `Evaluator.transform_{from,to}_ntt_inplace` on
ciphertexts built by `crypto.he.seal_bytes` (its one hand-written stream format).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from common.errors import ProtocolError
from crypto.he import lr_coeffs
from crypto.he.ckks import make_context
from crypto.he.interface import LrSuite
from crypto.he.lr import CkksLr
from crypto.he.params import CkksParams, load_tenseal_context

_MIN_TARGET, _MAX_TARGET = 2.0**20, 2.0**45


def _fresh(lr: CkksLr, coeffs: list[int], scale: float) -> Any:
    """A fresh top-level encryption, under lr's key, of the polynomial `coeffs` at `scale`."""
    zero = lr.encrypt_zero()
    zero.scale = scale
    return lr_coeffs.shift(lr, zero, lr_coeffs.to_ntt(lr, coeffs), +1)


class CkksLrArbiter(CkksLr):
    """The arbiter's context: a fresh key pair for one job (or one loaded from its vault)."""

    @classmethod
    def create(cls, params: CkksParams) -> CkksLrArbiter:
        return cls(make_context(params, galois_keys=True, relin_keys=True))

    @classmethod
    def from_secret_bytes(cls, data: bytes) -> CkksLrArbiter:
        return cls(load_tenseal_context(data, scheme="CKKS", private=True,
                                        what="arbiter key file"))

    def secret_bytes(self) -> bytes:
        out: bytes = self._ctx.serialize(save_public_key=True, save_secret_key=True,
                                         save_galois_keys=True, save_relin_keys=True)
        return out

    def refresh(self, data: bytes, target: float) -> bytes:
        return refresh(self, data, target)

    def reencrypt(self, data: bytes, owner_public: bytes) -> bytes:
        return reencrypt(self, data, CkksLr.from_public_bytes(owner_public))


def own_key(params: CkksParams) -> CkksLr:
    """A party's own key pair on the job's ring (no rotation keys): what `reencrypt` targets."""
    return CkksLr(make_context(params, galois_keys=False, relin_keys=False))


def refresh(lr: CkksLr, data: bytes, target: float) -> bytes:
    """Decrypt each chunk exactly, bring it to scale `target` and encrypt it afresh."""
    if not _MIN_TARGET <= target <= _MAX_TARGET:
        raise ProtocolError(f"refresh target scale 2^{np.log2(target):.1f} outside 2^20..2^45")
    out = []
    for ct in lr.unpack(data):
        ratio = Fraction(target) / Fraction(float(ct.scale))
        if ratio > 1:
            raise ProtocolError("a refresh only lowers a ciphertext's scale")
        coeffs = lr_coeffs.from_ntt(lr, lr_coeffs.plain_raw(lr, lr.decrypt_plain(ct)))
        out.append(_fresh(lr, lr_coeffs.rounded(coeffs, ratio), target))
    return lr.pack(out)


def reencrypt(lr: CkksLr, data: bytes, owner: CkksLr) -> bytes:
    """Decrypt each chunk to its plaintext and encrypt that plaintext under `owner`'s key."""
    if owner.primes != lr.primes or owner.slot_count != lr.slot_count:
        raise ProtocolError("the owner's context is not on the job's ring")
    return owner.pack([owner.encrypt_plain(lr.decrypt_plain(ct), float(ct.scale))
                       for ct in lr.unpack(data)])


CKKS_LR_SUITE = LrSuite("ckks", CkksLrArbiter.create, CkksLrArbiter.from_secret_bytes,
                        CkksLr.from_public_bytes, own_key)

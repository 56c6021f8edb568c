"""The requesting bank's own CKKS key for joint scoring: encrypt, add, decrypt packed logits.

Scoring only adds ciphertexts, so a small ring suffices: N=4096 with moduli [60, 49] (109 bits,
the 128-bit limit for N=4096), scale 2^40, 2048 slots. Each ciphertext carries up to 1024 ids:
partial logits in the first half of the slots, coverage flags (1 where the party knows the id)
in the second half, so the sum tells the bank how many parties covered each enterprise.
Every load (the bank's own key file, a party's or the relay's public copy) passes the 128-bit
check and the secret-key rule of `crypto.he.params.load_tenseal_context`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tenseal as ts

from common.errors import ProtocolError
from crypto.he.params import check_128_bit, load_tenseal_context

POLY_MODULUS_DEGREE = 4096
COEFF_MOD_BIT_SIZES = (60, 49)
SCALE = 2.0**40
SLOTS = POLY_MODULUS_DEGREE // 2
IDS_PER_CIPHERTEXT = SLOTS // 2
check_128_bit(POLY_MODULUS_DEGREE, COEFF_MOD_BIT_SIZES)


def new_private_context() -> ts.Context:
    """The bank's key pair for scoring (never the coordinator's training key)."""
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, POLY_MODULUS_DEGREE,
                     coeff_mod_bit_sizes=list(COEFF_MOD_BIT_SIZES))
    ctx.global_scale = SCALE
    return ctx


def private_bytes(ctx: ts.Context) -> bytes:
    return bytes(ctx.serialize(save_secret_key=True))


def public_bytes(ctx: ts.Context) -> bytes:
    return bytes(ctx.serialize(save_secret_key=False, save_galois_keys=False,
                               save_relin_keys=False))


def load_context(data: bytes, *, private: bool) -> ts.Context:
    """Load a scoring context: CKKS at 128-bit security; a public one must not carry a secret
    key, and the bank's own (`private`) must."""
    ctx = load_tenseal_context(data, scheme="CKKS", private=private, what="scoring context")
    if ctx.global_scale != SCALE:
        ctx.global_scale = SCALE
    return ctx


def encrypt_partials(ctx: ts.Context, logits: np.ndarray, covered: np.ndarray) -> list[bytes]:
    """Pack (logit, coverage) of every id into ciphertexts of IDS_PER_CIPHERTEXT ids each."""
    out = []
    for start in range(0, max(len(logits), 1), IDS_PER_CIPHERTEXT):
        block = np.zeros(SLOTS)
        part = logits[start:start + IDS_PER_CIPHERTEXT]
        block[: part.size] = part
        block[IDS_PER_CIPHERTEXT: IDS_PER_CIPHERTEXT + part.size] = covered[
            start:start + IDS_PER_CIPHERTEXT]
        out.append(bytes(ts.ckks_vector(ctx, block.tolist()).serialize()))
    return out


def add_ciphertexts(ctx: ts.Context, parties: Sequence[Sequence[bytes]]) -> list[bytes]:
    """Slot-wise sum over parties of their aligned ciphertext lists (no key needed)."""
    counts = {len(p) for p in parties}
    if len(counts) != 1:
        raise ProtocolError(f"parties answered with different numbers of ciphertexts: {counts}")
    out = []
    for column in zip(*parties, strict=True):
        total = _load(ctx, column[0])
        for other in column[1:]:
            total += _load(ctx, other)
        out.append(bytes(total.serialize()))
    return out


def decrypt_sums(ctx: ts.Context, ciphertexts: Sequence[bytes],
                 n_ids: int) -> tuple[np.ndarray, np.ndarray]:
    """(Σ partial logits, number of covering parties) for the first `n_ids` ids."""
    logits, covered = [], []
    for data in ciphertexts:
        values = np.asarray(_load(ctx, data).decrypt())
        logits.append(values[:IDS_PER_CIPHERTEXT])
        covered.append(values[IDS_PER_CIPHERTEXT:])
    return (np.concatenate(logits)[:n_ids],
            np.rint(np.concatenate(covered)[:n_ids]).astype(np.int64))


def _load(ctx: ts.Context, data: bytes) -> ts.CKKSVector:
    try:
        return ts.ckks_vector_from(ctx, data)
    except Exception as err:  # noqa: BLE001
        raise ProtocolError(f"scoring ciphertext refused: {err}") from err

"""CKKS for VLR training: contexts and the backend over TenSEAL's SEAL bindings."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import tenseal as ts
import tenseal.sealapi as sa

from common.errors import ProtocolError
from crypto.he import seal_bytes
from crypto.he.frames import pack_vector, unpack_vector
from crypto.he.interface import HeSuite, Prepared, as_vector, check_prepared
from crypto.he.params import CkksParams, load_tenseal_context

CKKS_TAG = b"CKKS"


def make_context(
    params: CkksParams, *, galois_keys: bool = True, relin_keys: bool = True
) -> ts.Context:
    """A fresh private CKKS context (secret key inside) with Galois and relinearisation keys."""
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        params.poly_modulus_degree,
        coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
    )
    ctx.global_scale = params.scale
    if galois_keys:
        ctx.generate_galois_keys()
    if relin_keys and not ctx.has_relin_keys():
        ctx.generate_relin_keys()
    return ctx


def public_context_bytes(ctx: ts.Context, *, relin_keys: bool = True) -> bytes:
    """Serialise a context without its secret key (public key, Galois and relin keys kept)."""
    data: bytes = ctx.serialize(
        save_public_key=True,
        save_secret_key=False,
        save_galois_keys=bool(ctx.has_galois_keys()),
        save_relin_keys=relin_keys and bool(ctx.has_relin_keys()),
    )
    return data


def load_public_context(data: bytes) -> ts.Context:
    """Load a peer's public context; refuse one carrying a secret key or weak parameters."""
    what = "received CKKS context"
    ctx = load_tenseal_context(data, scheme="CKKS", private=False, what=what)
    try:
        CkksParams.of_context(ctx)
    except ValueError as err:
        raise ProtocolError(f"{what} refused: {err}") from err
    return ctx


class CkksBackend:
    """CKKS through TenSEAL's SEAL bindings; ciphertexts travel as SEAL-serialised bytes."""

    name = "ckks"

    def __init__(self, ctx: ts.Context) -> None:
        self._ctx = ctx
        self.params = CkksParams.of_context(ctx)
        self._seal = ctx.seal_context().data
        self._encoder = sa.CKKSEncoder(self._seal)
        self._evaluator = sa.Evaluator(self._seal)
        self._encryptor = sa.Encryptor(self._seal, ctx.public_key().data)
        self._galois = ctx.galois_keys().data if ctx.has_galois_keys() else None
        self._decryptor = (
            sa.Decryptor(self._seal, ctx.secret_key().data) if ctx.is_private() else None
        )
        self._first = self._seal.first_parms_id()
        self._scale = float(ctx.global_scale)

    @classmethod
    def create(cls, params: CkksParams, galois_keys: bool = True) -> CkksBackend:
        """A backend holding a fresh key pair (the arbiter's, or the label node's own)."""
        return cls(make_context(params, galois_keys=galois_keys, relin_keys=galois_keys))

    @classmethod
    def from_public_bytes(cls, data: bytes) -> CkksBackend:
        """The production loader: a peer's public context, checked by `load_public_context`."""
        return cls(load_public_context(data))

    @property
    def slot_count(self) -> int:
        return int(self._encoder.slot_count())

    @property
    def can_decrypt(self) -> bool:
        return self._decryptor is not None

    def public_bytes(self) -> bytes:
        """Public context; a key pair made without Galois keys (encrypt/add only) ships lean."""
        return public_context_bytes(self._ctx, relin_keys=self._galois is not None)

    def _load(self, data: bytes) -> Any:
        ct = seal_bytes.load(sa.Ciphertext(self._seal), self._seal, data, "ciphertext")
        if ct.size() != 2 or not ct.is_ntt_form():
            raise ProtocolError(f"ciphertext of size {ct.size()} refused (expected 2, NTT form)")
        return ct

    def _encode(self, values: np.ndarray, parms_id: Any, scale: float) -> Any:
        pt = sa.Plaintext()
        self._encoder.encode(values.tolist(), parms_id, scale, pt)
        return pt

    def _encrypt_chunk(self, values: np.ndarray) -> Any:
        ct = sa.Ciphertext(self._seal)
        self._encryptor.encrypt(self._encode(values, self._first, self._scale), ct)
        return ct

    def _pack(self, n: int, cts: Sequence[Any]) -> bytes:
        return pack_vector(CKKS_TAG, n, self.slot_count, [seal_bytes.save(c) for c in cts])

    def _unpack(self, data: bytes) -> tuple[int, list[Any]]:
        n, chunks = unpack_vector(data, CKKS_TAG, self.slot_count)
        return n, [self._load(c) for c in chunks]

    def encrypt(self, values: np.ndarray) -> bytes:
        flat, s = as_vector(values), self.slot_count
        return self._pack(
            flat.size, [self._encrypt_chunk(flat[i : i + s]) for i in range(0, flat.size, s)]
        )

    def add(self, parts: Sequence[bytes], plain: np.ndarray | None = None) -> bytes:
        if not parts:
            raise ValueError("nothing to add")
        n, acc = self._unpack(parts[0])
        for part in parts[1:]:
            m, other = self._unpack(part)
            if m != n:
                raise ProtocolError(f"cannot add encrypted vectors of {n} and {m} values")
            for a, b in zip(acc, other, strict=True):
                if a.parms_id() != b.parms_id() or not math.isclose(a.scale, b.scale, rel_tol=1e-9):
                    raise ProtocolError("cannot add ciphertexts at different levels or scales")
                self._evaluator.add_inplace(a, b)
        if plain is not None:
            flat, s = as_vector(plain), self.slot_count
            if flat.size != n:
                raise ValueError(f"plain addend has {flat.size} values, ciphertext {n}")
            for i, ct in enumerate(acc):
                self._evaluator.add_plain_inplace(
                    ct, self._encode(flat[i * s : (i + 1) * s], ct.parms_id(), ct.scale)
                )
        return self._pack(n, acc)

    def prepare(self, plains: np.ndarray) -> Prepared:
        groups, fold, s = plains.shape
        nonzero = np.any(plains != 0.0, axis=2)
        native = [
            [
                self._encode(plains[g, k], self._first, self._scale) if nonzero[g, k] else None
                for k in range(fold)
            ]
            for g in range(groups)
        ]
        per_plain = self.params.poly_modulus_degree * (len(self.params.coeff_mod_bit_sizes) - 1) * 8
        return Prepared(self.name, (groups, fold, s), int(nonzero.sum()) * per_plain, native)

    def masked_packed_products(self, vector: bytes, prepared: Prepared, masks: np.ndarray) -> bytes:
        s = self.slot_count
        check_prepared(prepared, self.name, s, masks)
        if self._galois is None:
            raise ProtocolError("context has no Galois keys: cannot rotate")
        n, cts = self._unpack(vector)
        if len(cts) != 1:
            raise ProtocolError(f"residual must be one ciphertext, got {len(cts)}")
        d = cts[0]
        if d.parms_id() != self._first or not math.isclose(d.scale, self._scale, rel_tol=1e-9):
            raise ProtocolError("residual ciphertext is not at the fresh level and scale")
        groups, fold, _ = prepared.shape
        width, ev = s // fold, self._evaluator
        rotated = [d]
        for _ in range(1, fold):
            nxt = sa.Ciphertext(self._seal)
            ev.rotate_vector(rotated[-1], width, self._galois, nxt)
            rotated.append(nxt)
        out = []
        for g in range(groups):
            terms = [(rotated[k], p) for k, p in enumerate(prepared.native[g]) if p is not None]
            if not terms:  # the product is exactly zero: send the mask alone, freshly encrypted
                out.append(self._encrypt_chunk(masks[g]))
                continue
            acc, tmp = sa.Ciphertext(self._seal), sa.Ciphertext(self._seal)
            ev.multiply_plain(terms[0][0], terms[0][1], acc)
            for ct, p in terms[1:]:
                ev.multiply_plain(ct, p, tmp)
                ev.add_inplace(acc, tmp)
            ev.rescale_to_next_inplace(acc)
            step = 1
            while step < width:
                ev.rotate_vector(acc, step, self._galois, tmp)
                ev.add_inplace(acc, tmp)
                step *= 2
            ev.add_plain_inplace(acc, self._encode(masks[g], acc.parms_id(), acc.scale))
            out.append(acc)
        return self._pack(groups * s, out)

    def decrypt(self, data: bytes) -> np.ndarray:
        if self._decryptor is None:
            raise PermissionError("this backend holds no secret key")
        n, cts = self._unpack(data)
        values = []
        for ct in cts:
            pt = sa.Plaintext()
            self._decryptor.decrypt(ct, pt)
            values.append(np.asarray(self._encoder.decode_double(pt), dtype=np.float64))
        return np.concatenate(values)[:n]


CKKS_SUITE = HeSuite("ckks", CkksBackend.from_public_bytes, CkksBackend.create)

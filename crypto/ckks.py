"""CKKS parameters and contexts, and the pluggable HE backend with its plaintext twin."""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import tenseal as ts
import tenseal.sealapi as sa

from common.errors import ProtocolError

# Largest total coefficient-modulus size (bits) at 128-bit classical security, by ring degree
# (HomomorphicEncryption.org standard, the table SEAL enforces as sec_level_type::tc128).
MAX_COEFF_BITS_128: dict[int, int] = {4096: 109, 8192: 218, 16384: 438, 32768: 881}
PRODUCTION_ENV = "FEDCREDIT_PRODUCTION"

_FRAMES_MAGIC = b"FCF1"
_VECTOR_HEADER = struct.Struct("<4sQI")  # backend tag, number of values, slots per chunk
_CKKS_TAG = b"CKKS"
_PLAIN_TAG = b"PLN1"
_PLAIN_CONTEXT = b"fedcredit/plain-twin/v1"


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
            raise ValueError(
                f"poly_modulus_degree {n} is not allowed: 128-bit security is only configured "
                f"for {sorted(MAX_COEFF_BITS_128)}"
            )
        if len(bits) < 3:
            raise ValueError(
                f"coeff_mod_bit_sizes {list(bits)} needs at least 3 primes "
                "(data prime, one rescaling prime, special prime)"
            )
        if any(b < 20 or b > 60 for b in bits):
            raise ValueError(f"coeff_mod_bit_sizes {list(bits)}: every prime must be 20..60 bits")
        total, limit = sum(bits), MAX_COEFF_BITS_128[n]
        if total > limit:
            raise ValueError(
                f"coefficient modulus of {total} bits exceeds {limit} bits, the 128-bit security "
                f"limit at poly_modulus_degree {n}"
            )
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
        parms = ctx.seal_context().data.key_context_data().parms()
        bits = tuple(int(m.bit_count()) for m in parms.coeff_modulus())
        try:
            scale = float(ctx.global_scale)
        except ValueError as err:
            raise ValueError("context carries no global scale") from err
        scale_bits = round(math.log2(scale))
        if 2.0**scale_bits != scale:
            raise ValueError(f"context scale {scale} is not a power of two")
        return cls(int(parms.poly_modulus_degree()), bits, scale_bits)


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
    try:
        ctx = ts.context_from(data)
    except (ValueError, RuntimeError, TypeError) as err:
        raise ProtocolError(f"not a serialized TenSEAL context: {err}") from err
    if ctx.is_private():
        raise ProtocolError("refusing a public context that carries a secret key")
    if ctx.seal_context().data.key_context_data().parms().scheme().name != "CKKS":
        raise ProtocolError("received context is not a CKKS context")
    try:
        CkksParams.of_context(ctx)
    except ValueError as err:
        raise ProtocolError(f"received CKKS context refused: {err}") from err
    return ctx


def pack_frames(frames: Sequence[bytes]) -> bytes:
    """Length-prefixed concatenation of byte strings (the unit every step exchanges)."""
    head = _FRAMES_MAGIC + struct.pack(f"<I{len(frames)}Q", len(frames), *map(len, frames))
    return head + b"".join(frames)


def unpack_frames(data: bytes, *, max_frames: int = 1 << 16) -> list[bytes]:
    """Inverse of `pack_frames`; raises ProtocolError on anything malformed."""
    view = memoryview(data)
    if len(view) < 8 or bytes(view[:4]) != _FRAMES_MAGIC:
        raise ProtocolError("message is not a fedcredit frame list")
    (count,) = struct.unpack_from("<I", view, 4)
    if count > max_frames or len(view) < 8 + 8 * count:
        raise ProtocolError(f"frame list claims {count} frames, more than allowed or present")
    lengths = struct.unpack_from(f"<{count}Q", view, 8)
    offset = 8 + 8 * count
    if offset + sum(lengths) != len(view):
        raise ProtocolError("frame lengths do not add up to the message size")
    out = []
    for length in lengths:
        out.append(bytes(view[offset : offset + length]))
        offset += length
    return out


@dataclass(frozen=True)
class Prepared:
    """Plaintext operands of `masked_packed_products`, encoded once by a backend (cacheable)."""

    backend: str
    shape: tuple[int, int, int]  # (groups, fold, slots)
    nbytes: int
    native: Any


class HeBackend(Protocol):
    """What the VLR roles need from homomorphic encryption; values travel as `bytes`.

    `masked_packed_products(v, P, masks)` returns G ciphertexts, group g holding in slot s
    sum_{u<R} sum_{k<F} v[(s+u+kR) mod S] * P[g,k,(s+u) mod S] + masks[g,s], with R = S/F.
    """

    @property
    def name(self) -> str: ...
    @property
    def slot_count(self) -> int: ...
    @property
    def can_decrypt(self) -> bool: ...
    def public_bytes(self) -> bytes: ...
    def encrypt(self, values: np.ndarray) -> bytes: ...
    def add(self, parts: Sequence[bytes], plain: np.ndarray | None = None) -> bytes: ...
    def prepare(self, plains: np.ndarray) -> Prepared: ...
    def masked_packed_products(
        self, vector: bytes, prepared: Prepared, masks: np.ndarray
    ) -> bytes: ...
    def decrypt(self, data: bytes) -> np.ndarray: ...


@dataclass(frozen=True)
class HeSuite:
    """How a role gets its backends: load a peer's public context, or make its own key pair."""

    name: str
    load_public: Callable[[bytes], HeBackend]
    make_private: Callable[[CkksParams, bool], HeBackend]  # (params, with Galois keys)


def _check_prepared(prepared: Prepared, backend: str, slots: int, masks: np.ndarray) -> None:
    groups, fold, s = prepared.shape
    if prepared.backend != backend or s != slots or slots % fold or fold & (fold - 1):
        raise ValueError(f"prepared operands {prepared.shape} do not fit backend {backend}")
    if masks.shape != (groups, slots):
        raise ValueError(f"masks shape {masks.shape} != {(groups, slots)}")


def _vector_frames(data: bytes, tag: bytes, slots: int) -> tuple[int, list[bytes]]:
    frames = unpack_frames(data)
    if not frames or len(frames[0]) != _VECTOR_HEADER.size:
        raise ProtocolError("encrypted vector has no header")
    got_tag, n, chunk = _VECTOR_HEADER.unpack(frames[0])
    if got_tag != tag or chunk != slots:
        raise ProtocolError(f"vector made by backend {got_tag!r}/{chunk} slots, expected {tag!r}")
    if n < 1 or len(frames) - 1 != -(-n // slots):
        raise ProtocolError(f"vector of {n} values has {len(frames) - 1} chunks")
    return n, frames[1:]


def _as_vector(values: np.ndarray) -> np.ndarray:
    flat = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
    if flat.size == 0 or not np.all(np.isfinite(flat)):
        raise ValueError("can only encrypt a non-empty vector of finite values")
    return flat


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

    # -- raw ciphertext (de)serialisation: SEAL only saves to paths, so go through a memfd --
    def _save(self, ct: Any) -> bytes:
        fd = os.memfd_create("fedcredit-ct", os.MFD_CLOEXEC)
        try:
            ct.save(f"/proc/self/fd/{fd}")
            with open(f"/proc/self/fd/{fd}", "rb") as handle:
                return handle.read()
        finally:
            os.close(fd)

    def _load(self, data: bytes) -> Any:
        fd = os.memfd_create("fedcredit-ct", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            ct = sa.Ciphertext(self._seal)
            try:
                ct.load(self._seal, f"/proc/self/fd/{fd}")
            except (ValueError, RuntimeError, TypeError) as err:
                raise ProtocolError(f"ciphertext refused: {err}") from err
        finally:
            os.close(fd)
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
        header = _VECTOR_HEADER.pack(_CKKS_TAG, n, self.slot_count)
        return pack_frames([header, *map(self._save, cts)])

    def _unpack(self, data: bytes) -> tuple[int, list[Any]]:
        n, chunks = _vector_frames(data, _CKKS_TAG, self.slot_count)
        return n, [self._load(c) for c in chunks]

    def encrypt(self, values: np.ndarray) -> bytes:
        flat, s = _as_vector(values), self.slot_count
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
            flat, s = _as_vector(plain), self.slot_count
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
        _check_prepared(prepared, self.name, s, masks)
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


_TESTING_TOKEN = object()


class PlainBackend:
    """The plaintext twin: the same protocol with values as float64 bytes, for tests and baselines.

    It protects nothing, so it is unreachable from configuration: no config value, context bytes
    or loader selects it. Code gets one only through `PlainBackend.for_testing()` or
    `PlainBackend.suite_for_testing()`, and both refuse when FEDCREDIT_PRODUCTION=1.
    """

    name = "plain-twin"

    def __init__(self, slot_count: int, *, _token: object = None) -> None:
        if _token is not _TESTING_TOKEN:
            raise TypeError("PlainBackend is test-only: use PlainBackend.for_testing()")
        if slot_count < 2 or slot_count & (slot_count - 1):
            raise ValueError(f"slot_count {slot_count} must be a power of two")
        self._slots = slot_count

    @staticmethod
    def _refuse_in_production() -> None:
        if os.environ.get(PRODUCTION_ENV) == "1":
            raise RuntimeError(f"the plaintext twin is disabled when {PRODUCTION_ENV}=1")

    @classmethod
    def for_testing(cls, slot_count: int = CkksParams().slot_count) -> PlainBackend:
        cls._refuse_in_production()
        return cls(slot_count, _token=_TESTING_TOKEN)

    @classmethod
    def suite_for_testing(cls) -> HeSuite:
        cls._refuse_in_production()

        def load_public(data: bytes) -> HeBackend:
            if data != _PLAIN_CONTEXT:
                raise ProtocolError("not a plain-twin context")
            return cls.for_testing()

        def make_private(params: CkksParams, galois_keys: bool) -> HeBackend:
            return cls.for_testing(params.slot_count)

        return HeSuite("plain-twin", load_public, make_private)

    @property
    def slot_count(self) -> int:
        return self._slots

    @property
    def can_decrypt(self) -> bool:
        return True

    def public_bytes(self) -> bytes:
        return _PLAIN_CONTEXT

    def _pack(self, flat: np.ndarray) -> bytes:
        s = self._slots
        header = _VECTOR_HEADER.pack(_PLAIN_TAG, flat.size, s)
        chunks = [flat[i : i + s].astype("<f8").tobytes() for i in range(0, flat.size, s)]
        return pack_frames([header, *chunks])

    def _unpack(self, data: bytes) -> np.ndarray:
        n, chunks = _vector_frames(data, _PLAIN_TAG, self._slots)
        if any(len(c) % 8 or len(c) > 8 * self._slots for c in chunks):
            raise ProtocolError("plain-twin chunk has a bad length")
        flat = np.frombuffer(b"".join(chunks), dtype="<f8").astype(np.float64)
        if flat.size != n:
            raise ProtocolError(f"plain-twin vector has {flat.size} values, header says {n}")
        return flat

    def encrypt(self, values: np.ndarray) -> bytes:
        return self._pack(_as_vector(values))

    def add(self, parts: Sequence[bytes], plain: np.ndarray | None = None) -> bytes:
        if not parts:
            raise ValueError("nothing to add")
        vectors = [self._unpack(p) for p in parts]
        if len({v.size for v in vectors}) != 1:
            raise ProtocolError("cannot add vectors of different lengths")
        total = np.sum(vectors, axis=0)
        if plain is not None:
            total = total + _as_vector(plain)
        return self._pack(total)

    def prepare(self, plains: np.ndarray) -> Prepared:
        copy = np.array(plains, dtype=np.float64)
        groups, fold, slots = copy.shape
        return Prepared(self.name, (groups, fold, slots), copy.nbytes, copy)

    def masked_packed_products(self, vector: bytes, prepared: Prepared, masks: np.ndarray) -> bytes:
        s = self._slots
        _check_prepared(prepared, self.name, s, masks)
        v = np.zeros(s)
        values = self._unpack(vector)
        if values.size > s:
            raise ProtocolError(f"residual must fit one chunk of {s} slots")
        v[: values.size] = values
        _, fold, _ = prepared.shape
        width = s // fold
        slot = np.arange(s)
        copies = v[(slot[None, :] + width * np.arange(fold)[:, None]) % s]  # (F, S)
        products = np.einsum("gks,ks->gs", prepared.native, copies)
        cumulative = np.cumsum(
            np.concatenate(
                [np.zeros((products.shape[0], 1)), products, products[:, :width]], axis=1
            ),
            axis=1,
        )
        windows = cumulative[:, slot + width] - cumulative[:, slot]
        return self._pack((windows + masks).reshape(-1))

    def decrypt(self, data: bytes) -> np.ndarray:
        return self._unpack(data)


CKKS_SUITE = HeSuite("ckks", CkksBackend.from_public_bytes, CkksBackend.create)

"""The plaintext twins of the CKKS and BFV backends: the same protocols with values in the clear.

They protect nothing, so they are unreachable from configuration: no config value, context bytes
or loader selects them. Code gets one only through `for_testing()` / `suite_for_testing()`, and
those refuse when FEDCREDIT_PRODUCTION=1. Tests and benchmarks' baselines use them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from common.errors import ProtocolError
from common.production import PRODUCTION_ENV as PRODUCTION_ENV
from common.production import refuse_in_production
from crypto.he.bfv_ring import HIST_PLAIN_BITS, chunk_width
from crypto.he.frames import VECTOR_HEADER, pack_vector, unpack_frames, unpack_vector
from crypto.he.interface import (
    FeatureHe,
    HeBackend,
    HeSuite,
    Prepared,
    SbtSuite,
    as_vector,
    check_prepared,
)
from crypto.he.params import CkksParams

_PLAIN_TAG = b"PLN1"
_PLAIN_CONTEXT = b"fedcredit/plain-twin/v1"
_SBT_PLAIN_TAG = b"SBTP"
_SBT_PLAIN_CONTEXT = b"fedcredit/sbt-plain-twin/v1"
_TWIN_SCORE_MODULUS = 1099511480321  # the 40-bit batching prime the BFV scoring key uses
_TESTING_TOKEN = object()


def _refuse_in_production() -> None:
    refuse_in_production("the plaintext crypto twin")


class PlainBackend:
    """CKKS's twin (VLR): values as float64 bytes. `PlainBackend.for_testing()` or
    `PlainBackend.suite_for_testing()` only."""

    name = "plain-twin"

    def __init__(self, slot_count: int, *, _token: object = None) -> None:
        if _token is not _TESTING_TOKEN:
            raise TypeError("PlainBackend is test-only: use PlainBackend.for_testing()")
        if slot_count < 2 or slot_count & (slot_count - 1):
            raise ValueError(f"slot_count {slot_count} must be a power of two")
        self._slots = slot_count

    @classmethod
    def for_testing(cls, slot_count: int = CkksParams().slot_count) -> PlainBackend:
        _refuse_in_production()
        return cls(slot_count, _token=_TESTING_TOKEN)

    @classmethod
    def suite_for_testing(cls) -> HeSuite:
        _refuse_in_production()

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
        chunks = [flat[i : i + s].astype("<f8").tobytes() for i in range(0, flat.size, s)]
        return pack_vector(_PLAIN_TAG, flat.size, s, chunks)

    def _unpack(self, data: bytes) -> np.ndarray:
        n, chunks = unpack_vector(data, _PLAIN_TAG, self._slots)
        if any(len(c) % 8 or len(c) > 8 * self._slots for c in chunks):
            raise ProtocolError("plain-twin chunk has a bad length")
        flat = np.frombuffer(b"".join(chunks), dtype="<f8").astype(np.float64)
        if flat.size != n:
            raise ProtocolError(f"plain-twin vector has {flat.size} values, header says {n}")
        return flat

    def encrypt(self, values: np.ndarray) -> bytes:
        return self._pack(as_vector(values))

    def add(self, parts: Sequence[bytes], plain: np.ndarray | None = None) -> bytes:
        if not parts:
            raise ValueError("nothing to add")
        vectors = [self._unpack(p) for p in parts]
        if len({v.size for v in vectors}) != 1:
            raise ProtocolError("cannot add vectors of different lengths")
        total = np.sum(vectors, axis=0)
        if plain is not None:
            total = total + as_vector(plain)
        return self._pack(total)

    def prepare(self, plains: np.ndarray) -> Prepared:
        copy = np.array(plains, dtype=np.float64)
        groups, fold, slots = copy.shape
        return Prepared(self.name, (groups, fold, slots), copy.nbytes, copy)

    def masked_packed_products(self, vector: bytes, prepared: Prepared, masks: np.ndarray) -> bytes:
        s = self._slots
        check_prepared(prepared, self.name, s, masks)
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


class PlainTwin:
    """BFV's twin (SecureBoost): the same messages with values in the clear.
    `PlainTwin.suite_for_testing()` only."""

    name = "plain-twin"

    def __init__(self, *, _token: object = None) -> None:
        if _token is not _TESTING_TOKEN:
            raise TypeError("PlainTwin is test-only: use PlainTwin.suite_for_testing()")
        self.plain_modulus = 1 << HIST_PLAIN_BITS
        self.score_modulus = _TWIN_SCORE_MODULUS

    @classmethod
    def suite_for_testing(cls) -> SbtSuite:
        _refuse_in_production()

        def load(data: bytes) -> FeatureHe:
            if data != _SBT_PLAIN_CONTEXT:
                raise ProtocolError("not a plain-twin context")
            return cls(_token=_TESTING_TOKEN)

        return SbtSuite("plain-twin", lambda: cls(_token=_TESTING_TOKEN), load)

    def public_bytes(self) -> bytes:
        return _SBT_PLAIN_CONTEXT

    @staticmethod
    def _vector(values: np.ndarray, per: int) -> bytes:
        flat = np.asarray(values, dtype=np.uint64).reshape(-1)
        return pack_vector(_SBT_PLAIN_TAG, flat.size, per, [flat.astype("<u8").tobytes()])

    @staticmethod
    def _values(data: bytes, per: int) -> np.ndarray:
        frames = unpack_frames(data)
        if len(frames) != 2 or len(frames[0]) != VECTOR_HEADER.size:
            raise ProtocolError("not a plain-twin vector")
        tag, n, got = VECTOR_HEADER.unpack(frames[0])
        if tag != _SBT_PLAIN_TAG or got != per or len(frames[1]) != 8 * n:
            raise ProtocolError("plain-twin vector header does not match")
        return np.frombuffer(frames[1], dtype="<u8").astype(np.uint64)

    def encrypt_chunks(self, values: np.ndarray, slots: int) -> bytes:
        return self._vector(values, chunk_width(slots))

    def histograms(self, chunks: bytes, bins: np.ndarray, slots: int) -> bytes:
        values = self._values(chunks, chunk_width(slots))
        rows, features = bins.shape
        if values.size != rows:
            raise ProtocolError(f"{values.size} rows for {rows} binned rows")
        index = (np.arange(features) * slots + bins.astype(np.int64)).reshape(-1)
        lo = np.repeat((values & np.uint64((1 << 30) - 1)).astype(np.float64), features)
        hi = np.repeat((values >> np.uint64(30)).astype(np.float64), features)
        size = features * slots
        sums_lo = np.bincount(index, weights=lo, minlength=size).astype(np.uint64)
        sums_hi = np.bincount(index, weights=hi, minlength=size).astype(np.uint64)
        total = (sums_lo + (sums_hi << np.uint64(30))) & np.uint64(self.plain_modulus - 1)
        return self._vector(total, 1)

    def histograms_many(
        self, vectors: Sequence[bytes], bins: np.ndarray, slots: int
    ) -> list[bytes]:
        return [self.histograms(v, bins, slots) for v in vectors]

    def decrypt_histograms(self, data: bytes, features: int, slots: int) -> np.ndarray:
        values = self._values(data, 1)
        if values.size != features * slots:
            raise ProtocolError(f"expected {features}x{slots} sums")
        return values.reshape(features, slots)

    def encrypt_slots(self, values: np.ndarray) -> bytes:
        return self._vector(values, 1)

    def multiply_slots(self, data: bytes, factors: np.ndarray) -> bytes:
        v, f = self._values(data, 1), np.asarray(factors, dtype=np.uint64).reshape(-1)
        if f.size != v.size:
            raise ProtocolError("factor count differs from the slot count")
        t = np.uint64(self.score_modulus)
        lo = (v * (f & np.uint64(0xFFFFF))) % t
        hi = ((v * (f >> np.uint64(20))) % t) * np.uint64(1 << 20) % t
        return self._vector((lo + hi) % t, 1)

    def add_slots(self, parts: Sequence[bytes]) -> bytes:
        vectors = [self._values(p, 1) for p in parts]
        if not vectors or len({v.size for v in vectors}) != 1:
            raise ProtocolError("cannot add slot vectors of different lengths")
        total = np.zeros_like(vectors[0])
        for v in vectors:
            total = (total + v) % np.uint64(self.score_modulus)
        return self._vector(total, 1)

    def decrypt_slots(self, data: bytes) -> np.ndarray:
        return self._values(data, 1)

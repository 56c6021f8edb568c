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
from crypto.he.frames import VECTOR_HEADER, pack_vector, unpack_frames
from crypto.he.interface import (
    FeatureHe,
    SbtSuite,
)

_PLAIN_TAG = b"PLN1"
_PLAIN_CONTEXT = b"fedcredit/plain-twin/v1"
_SBT_PLAIN_TAG = b"SBTP"
_SBT_PLAIN_CONTEXT = b"fedcredit/sbt-plain-twin/v1"
_TWIN_SCORE_MODULUS = 1099511480321  # the 40-bit batching prime the BFV scoring key uses
_TESTING_TOKEN = object()


def _refuse_in_production() -> None:
    refuse_in_production("the plaintext crypto twin")


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
        self, vectors: Sequence[bytes], bins: np.ndarray, slots: int,
        masks: np.ndarray | None = None,
    ) -> list[bytes]:
        out = [self.histograms(v, bins, slots) for v in vectors]
        if masks is None:
            return out
        t = np.uint64(self.plain_modulus)
        return [self._vector((self._values(o, 1) + m.reshape(-1).astype(np.uint64)) % t, 1)
                for o, m in zip(out, masks, strict=True)]

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

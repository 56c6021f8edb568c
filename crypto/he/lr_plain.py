"""The plaintext twin of label-private LR's HE (`crypto.he.lr`): same calls, numpy inside.

A "ciphertext" is (scale, values); `relabel`, `refresh` and `reencrypt` keep the scale
bookkeeping of the real thing, so the roles run the same steps and benchmarks show what
encryption costs. Masks are drawn but not added (see `mask`). Refused in production like every
twin (`crypto.he.plain`).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from common.errors import ProtocolError
from common.production import refuse_in_production
from crypto.he.frames import pack_frames, unpack_frames
from crypto.he.interface import LrSuite, Prepared, as_vector
from crypto.he.params import CkksParams
from crypto.masks import uniform_mask

_TAG = b"PLLR"


class PlainLr:
    """Twin of `CkksLr` and `CkksLrArbiter` (one class: the twin holds no secret)."""

    name = "plain"

    def __init__(self, params: CkksParams) -> None:
        refuse_in_production("the plaintext LR twin")
        self.params = params

    @property
    def slot_count(self) -> int:
        return self.params.slot_count

    def public_bytes(self) -> bytes:
        p = self.params
        return _TAG + json.dumps([p.poly_modulus_degree, list(p.coeff_mod_bit_sizes),
                                  p.scale_bits]).encode()

    def key_id(self) -> bytes:
        return self.public_bytes()

    def secret_bytes(self) -> bytes:
        return self.public_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> PlainLr:
        if data[:4] != _TAG:
            raise ProtocolError("not a plaintext-twin context")
        degree, bits, scale_bits = json.loads(data[4:])
        return cls(CkksParams(degree, tuple(bits), scale_bits))

    def _pack(self, scale: float, values: np.ndarray) -> bytes:
        return pack_frames([_TAG, struct.pack("<d", scale),
                            np.ascontiguousarray(values, dtype="<f8").tobytes()])

    def _unpack(self, data: bytes) -> tuple[float, np.ndarray]:
        frames = unpack_frames(data, max_frames=3)
        if len(frames) != 3 or frames[0] != _TAG:
            raise ProtocolError("not a plaintext-twin vector")
        return struct.unpack("<d", frames[1])[0], np.frombuffer(frames[2], dtype="<f8").copy()

    def encrypt(self, values: np.ndarray, scale: float) -> bytes:
        flat, s = as_vector(values), self.slot_count
        out = np.zeros(-(-flat.size // s) * s)
        out[: flat.size] = flat
        return self._pack(scale, out)

    def prepare(self, x: np.ndarray, period: int, scale: float) -> Prepared:
        b, p = x.shape
        padded = np.zeros((self.slot_count, period))
        padded[:b, :p] = x
        return Prepared(self.name, (1, period, self.slot_count), padded.nbytes, (padded, scale))

    def forward(self, weights: bytes, prepared: Prepared) -> bytes:
        scale, w = self._unpack(weights)
        x, x_scale = prepared.native
        return self._pack(scale * x_scale, x @ w[: x.shape[1]])

    def gradient(self, residual: bytes, prepared: Prepared) -> bytes:
        scale, d = self._unpack(residual)
        x, x_scale = prepared.native
        return self._pack(scale * x_scale, np.tile(x.T @ d, self.slot_count // x.shape[1]))

    def add(self, parts: Sequence[bytes], plain: np.ndarray | None = None) -> bytes:
        scale, acc = self._unpack(parts[0])
        for part in parts[1:]:
            other_scale, other = self._unpack(part)
            if other.size != acc.size or not np.isclose(other_scale, scale, rtol=1e-9):
                raise ProtocolError("cannot add vectors of other sizes or scales")
            acc = acc + other
        if plain is not None:
            acc[: plain.size] += plain
        return self._pack(scale, acc)

    def add_product(self, acc: bytes, vector: bytes, factors: np.ndarray) -> bytes:
        scale, a = self._unpack(acc)
        return self._pack(scale, a + factors * self._unpack(vector)[1])

    def subtract(self, a: bytes, b: bytes) -> bytes:
        scale, x = self._unpack(a)
        return self._pack(scale, x - self._unpack(b)[1])

    def concat(self, parts: Sequence[bytes]) -> bytes:
        unpacked = [self._unpack(p) for p in parts]
        return self._pack(unpacked[0][0], np.concatenate([v for _, v in unpacked]))

    def relabel(self, data: bytes, factor: float) -> bytes:
        scale, v = self._unpack(data)
        return self._pack(scale * factor, v / factor)

    def scales(self, data: bytes) -> list[float]:
        scale, v = self._unpack(data)
        return [scale] * (v.size // self.slot_count)

    def mask(self, data: bytes, bound: float) -> tuple[bytes, Any]:
        """Draws the masks (the cost is real) but adds none: 2^40-sized masks on float64
        values would destroy them, which is why the real backend masks exact integers."""
        scale, v = self._unpack(data)
        uniform_mask(v.size, bound)
        return self._pack(scale, v), (np.zeros(v.size), scale)

    def unmask(self, data: bytes, masks: Any, ratio: Fraction = Fraction(1)) -> bytes:
        scale, v = self._unpack(data)
        r, masked_at = masks
        return self._pack(scale, v - r * masked_at * float(ratio) / scale)

    def square_sum(self, data: bytes, linear: np.ndarray) -> bytes:
        scale, u = self._unpack(data)
        lin = np.zeros(u.size)
        lin[: linear.size] = linear
        total = float(np.sum(u * u + lin * u))
        return self._pack(scale * scale, np.full(self.slot_count, total))

    def decrypt(self, data: bytes) -> np.ndarray:
        return self._unpack(data)[1]

    def refresh(self, data: bytes, target: float) -> bytes:
        return self._pack(target, self._unpack(data)[1])

    def reencrypt(self, data: bytes, owner_public: bytes) -> bytes:
        PlainLr.from_bytes(owner_public)
        return data


def _twin(params: CkksParams) -> PlainLr:
    return PlainLr(params)


PLAIN_LR_SUITE = LrSuite("plain", _twin, PlainLr.from_bytes, PlainLr.from_bytes, _twin)

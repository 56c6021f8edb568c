"""What the algorithms need from HE: VLR's vector backend and SecureBoost's two sides, as protocols.

Each scheme has a real backend and a plaintext twin (`crypto.he.plain`) behind the same protocol;
a suite says how a role gets one (make its own key pair, or load a peer's public bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from crypto.he.params import CkksParams


@dataclass(frozen=True)
class Prepared:
    """Plaintext operands (a batch's encoded diagonals), encoded once by a backend (cacheable)."""

    backend: str
    shape: tuple[int, int, int]  # (1, period, slots)
    nbytes: int
    native: Any


class LabelHe(Protocol):
    """SecureBoost L's side: its own key pairs; encrypts packed gradients and selectors, decrypts
    sums."""

    @property
    def name(self) -> str: ...
    @property
    def plain_modulus(self) -> int: ...
    @property
    def score_modulus(self) -> int: ...
    def public_bytes(self) -> bytes: ...
    def encrypt_chunks(self, values: np.ndarray, slots: int) -> bytes: ...
    def decrypt_histograms(self, data: bytes, features: int, slots: int) -> np.ndarray: ...
    def encrypt_slots(self, values: np.ndarray) -> bytes: ...
    def decrypt_slots(self, data: bytes) -> np.ndarray: ...


class FeatureHe(Protocol):
    """SecureBoost F's (and the relay's) side: public context only; aggregates without
    decrypting."""

    @property
    def name(self) -> str: ...
    @property
    def plain_modulus(self) -> int: ...
    @property
    def score_modulus(self) -> int: ...
    def encrypt_chunks(self, values: np.ndarray, slots: int) -> bytes: ...
    def histograms(self, chunks: bytes, bins: np.ndarray, slots: int) -> bytes: ...
    def histograms_many(
        self, vectors: Sequence[bytes], bins: np.ndarray, slots: int,
        masks: np.ndarray | None = None,
    ) -> list[bytes]: ...
    def multiply_slots(self, data: bytes, factors: np.ndarray) -> bytes: ...
    def add_slots(self, parts: Sequence[bytes]) -> bytes: ...


@dataclass(frozen=True)
class SbtSuite:
    """How SecureBoost roles get their HE: L makes key pairs, F and the relay load L's public
    bytes."""

    name: str
    make_private: Callable[[], LabelHe]
    load_public: Callable[[bytes], FeatureHe]


def as_vector(values: np.ndarray) -> np.ndarray:
    """A flat float64 copy of values to encrypt: non-empty and finite."""
    flat = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
    if flat.size == 0 or not np.all(np.isfinite(flat)):
        raise ValueError("can only encrypt a non-empty vector of finite values")
    return flat


class LrHe(Protocol):
    """What label-private vertical LR needs (`crypto.he.lr` and its twin `crypto.he.lr_plain`).

    Every ciphertext stays at the top level; `relabel(f)` multiplies its scale by f (the value
    it stands for divides by f); masks are opaque tokens only the masking party keeps.
    """

    @property
    def slot_count(self) -> int: ...
    @property
    def params(self) -> CkksParams: ...
    def public_bytes(self) -> bytes: ...
    def key_id(self) -> bytes: ...
    def encrypt(self, values: np.ndarray, scale: float) -> bytes: ...
    def prepare(self, x: np.ndarray, period: int, scale: float) -> Prepared: ...
    def forward(self, weights: bytes, prepared: Prepared) -> bytes: ...
    def gradient(self, residual: bytes, prepared: Prepared) -> bytes: ...
    def add(self, parts: Sequence[bytes], plain: np.ndarray | None = None) -> bytes: ...
    def add_product(self, acc: bytes, vector: bytes, factors: np.ndarray) -> bytes: ...
    def subtract(self, a: bytes, b: bytes) -> bytes: ...
    def concat(self, parts: Sequence[bytes]) -> bytes: ...
    def relabel(self, data: bytes, factor: float) -> bytes: ...
    def scales(self, data: bytes) -> list[float]: ...
    def mask(self, data: bytes, bound: float) -> tuple[bytes, Any]: ...
    def unmask(self, data: bytes, masks: Any, ratio: Fraction = ...) -> bytes: ...
    def square_sum(self, data: bytes, linear: np.ndarray) -> bytes: ...
    def decrypt(self, data: bytes) -> np.ndarray: ...


class LrArbiterHe(LrHe, Protocol):
    """The arbiter's context: the two exact decryptions of `crypto.he.lr_arbiter`."""

    def secret_bytes(self) -> bytes: ...
    def refresh(self, data: bytes, target: float) -> bytes: ...
    def reencrypt(self, data: bytes, owner_public: bytes) -> bytes: ...


@dataclass(frozen=True)
class LrSuite:
    """How label-private LR roles get HE: the arbiter's key pair (new or from its vault), a
    party's view of the arbiter's public context, a party's own key pair on the same ring."""

    name: str
    make_arbiter: Callable[[CkksParams], LrArbiterHe]
    load_arbiter: Callable[[bytes], LrArbiterHe]
    load_public: Callable[[bytes], LrHe]
    own_key: Callable[[CkksParams], LrHe]

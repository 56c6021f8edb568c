"""What the algorithms need from HE: VLR's vector backend and SecureBoost's two sides, as protocols.

Each scheme has a real backend and a plaintext twin (`crypto.he.plain`) behind the same protocol;
a suite says how a role gets one (make its own key pair, or load a peer's public bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from crypto.he.params import CkksParams


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
    """How a VLR role gets its backends: load a peer's public context, or make its own key pair."""

    name: str
    load_public: Callable[[bytes], HeBackend]
    make_private: Callable[[CkksParams, bool], HeBackend]  # (params, with Galois keys)


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
    def histograms(self, chunks: bytes, bins: np.ndarray, slots: int) -> bytes: ...
    def histograms_many(
        self, vectors: Sequence[bytes], bins: np.ndarray, slots: int
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


def check_prepared(prepared: Prepared, backend: str, slots: int, masks: np.ndarray) -> None:
    """Refuse operands prepared by another backend or for another shape."""
    groups, fold, s = prepared.shape
    if prepared.backend != backend or s != slots or slots % fold or fold & (fold - 1):
        raise ValueError(f"prepared operands {prepared.shape} do not fit backend {backend}")
    if masks.shape != (groups, slots):
        raise ValueError(f"masks shape {masks.shape} != {(groups, slots)}")


def as_vector(values: np.ndarray) -> np.ndarray:
    """A flat float64 copy of values to encrypt: non-empty and finite."""
    flat = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
    if flat.size == 0 or not np.all(np.isfinite(flat)):
        raise ValueError("can only encrypt a non-empty vector of finite values")
    return flat

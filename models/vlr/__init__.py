"""Vertical logistic regression: configuration, step keys, alignment and the bytes steps carry.

The roles are one file each: `label.py` (L), `feature.py` (F), `arbiter.py` (A); `algorithm.py`
declares the steps and the driver once. Wire units: positions are little-endian uint32, values
little-endian float64, composite messages `pack_frames` lists, ciphertexts whatever the HE
backend emits.

The step sequence is declared once, in `algorithm.py` (its docstring walks through it).
Roles are not thread-safe: one call at a time.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.errors import ProtocolError
from crypto.he import CkksParams, pack_frames, unpack_frames
from models.protocol import StepKey as StepKey

# The ring of label-private LR: no ciphertext is ever rescaled, so all 158 data bits stay at the
# top level for the masked values the arbiter decrypts (see crypto.he.lr); 218 bits in all is the
# 128-bit limit at N = 8192. Weights live at scale 2^36.
LR_PARAMS = CkksParams(8192, (53, 52, 53, 60), 36)


class VlrConfig(BaseModel):
    """Hyper-parameters of one training job; every party of the job uses the same values.

    The `[vlr]` table of a job file; a key that is not listed here is refused by name.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_rate: float = 0.15
    decay: float = 0.0  # learning rate at epoch e: learning_rate / (1 + decay * e)
    l2: float = 0.0  # L2 penalty on every weight but the intercept
    batch_size: int = 4096
    min_batch: int = 64  # smaller batches are refused by every party
    max_epochs: int = 20
    patience: int = 3  # early stopping: epochs without a validation-loss gain of `tol`
    tol: float = 1e-4
    validation_fraction: float = 0.2  # 0: validate on the training rows (train = test)
    seed: int = 0
    mask_bits: int = 40  # statistical hiding of every value the arbiter decrypts (bits)
    min_rows_per_column: int = 30  # L refuses a feature node with more weights than rows / this
    cache_bytes: int = 2 << 30  # encoded diagonals of X kept across epochs, per party
    params: CkksParams = Field(default_factory=lambda: LR_PARAMS)  # the arbiter's ring

    @model_validator(mode="after")
    def _consistent(self) -> VlrConfig:
        problems = []
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            problems.append(f"learning_rate {self.learning_rate} must be > 0")
        if self.decay < 0 or self.l2 < 0 or self.tol < 0:
            problems.append("decay, l2 and tol must be >= 0")
        if not 1 <= self.min_batch <= self.batch_size:
            problems.append(
                f"need 1 <= min_batch ({self.min_batch}) <= batch_size ({self.batch_size})"
            )
        if not 40 <= self.mask_bits <= 64:
            problems.append(f"mask_bits {self.mask_bits} must be in 40..64")
        if self.batch_size > self.params.slot_count:
            problems.append(f"batch_size {self.batch_size} exceeds {self.params.slot_count} slots")
        if self.max_epochs < 1 or self.patience < 1:
            problems.append("max_epochs and patience must be >= 1")
        if not 0.0 <= self.validation_fraction < 1.0:
            problems.append(f"validation_fraction {self.validation_fraction} must be in [0, 1)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def learning_rate_at(self, epoch: int) -> float:
        return self.learning_rate / (1.0 + self.decay * epoch)


@dataclass(frozen=True)
class FeatureAlignment:
    """F's table row `own_rows[k]` sits at training position `positions[k]` of L's `n_rows`."""

    n_rows: int
    positions: np.ndarray
    own_rows: np.ndarray

    def validate(self, table_rows: int) -> None:
        pos, own = np.asarray(self.positions), np.asarray(self.own_rows)
        if pos.shape != own.shape or pos.ndim != 1:
            raise ValueError("positions and own_rows must be 1-d arrays of the same length")
        if pos.size and (pos.min() < 0 or pos.max() >= self.n_rows):
            raise ValueError(f"positions must lie in [0, {self.n_rows})")
        if own.size and (own.min() < 0 or own.max() >= table_rows):
            raise ValueError(f"own_rows must lie in [0, {table_rows})")
        if np.unique(pos).size != pos.size or np.unique(own).size != own.size:
            raise ValueError("positions and own_rows must not repeat")


@dataclass(frozen=True)
class EpochReport:
    """What L tells the driver after an epoch's validation."""

    epoch: int
    loss: float
    auc: float | None  # None per epoch: AUC/KS are computed once, for the final model
    ks: float | None
    improved: bool
    stop: bool
    best_epoch: int


def encode_positions(positions: np.ndarray) -> bytes:
    return np.asarray(positions, dtype="<u4").tobytes()


def decode_positions(data: bytes, n_rows: int) -> np.ndarray:
    """Positions from the wire: in range and without repeats, else ProtocolError."""
    if len(data) % 4:
        raise ProtocolError(f"positions message of {len(data)} bytes is not a uint32 array")
    pos = np.frombuffer(data, dtype="<u4").astype(np.int64)
    if pos.size and pos.max() >= n_rows:
        raise ProtocolError(f"position {int(pos.max())} out of range (n_rows={n_rows})")
    if np.unique(pos).size != pos.size:
        raise ProtocolError("positions repeat")
    return pos


def encode_values(values: np.ndarray) -> bytes:
    return np.asarray(values, dtype="<f8").tobytes()


def decode_values(data: bytes, expected: int | None = None) -> np.ndarray:
    if len(data) % 8:
        raise ProtocolError(f"values message of {len(data)} bytes is not a float64 array")
    values = np.frombuffer(data, dtype="<f8").astype(np.float64)
    if expected is not None and values.size != expected:
        raise ProtocolError(f"expected {expected} values, got {values.size}")
    if not np.all(np.isfinite(values)):
        raise ProtocolError("values are not finite")
    return values


def encode_plan(train: np.ndarray, validation: np.ndarray) -> bytes:
    """L → F at set-up: training positions (F standardises on them) and validation positions."""
    return pack_frames([encode_positions(train), encode_positions(validation)])


def decode_plan(data: bytes, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    frames = unpack_frames(data, max_frames=2)
    if len(frames) != 2:
        raise ProtocolError("a plan has two frames: training and validation positions")
    return decode_positions(frames[0], n_rows), decode_positions(frames[1], n_rows)


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class StepCache:
    """Recent step answers by key: a retry gets the stored answer, a changed request an error."""

    def __init__(self, capacity: int = 64) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[Hashable, tuple[bytes, bytes]] = OrderedDict()

    def lookup(self, key: Hashable, request: bytes) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] != digest(request):
            raise ProtocolError(f"step {key} retried with a different request")
        return entry[1]

    def store(self, key: Hashable, request: bytes, response: bytes) -> bytes:
        self._entries[key] = (digest(request), response)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
        return response

    def clear(self) -> None:
        self._entries.clear()

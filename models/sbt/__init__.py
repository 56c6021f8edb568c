"""SecureBoost (vertical gradient-boosted trees): configuration, binning and the bytes steps carry.

One file per role: `label.py` (L: gradients, split finding, trees, leaf weights), `feature.py`
(F: bins, encrypted histograms, private split lookup table), `scoring.py` (joint scoring);
`algorithm.py` declares the steps and the driver once; `crypto.he` is the homomorphic layer.
Steps take and return plain values and `bytes`; the transport seals node-to-node bytes, these
modules do not.

Set-up:   L.open() -> public context -> F.open(context)          (F bins its own columns)
Tree k, level d, with StepKey(job, epoch=k, batch=d, step):
          L.histogram_request(key) -> bytes | None -> every F.histograms(key, request) -> bytes
          L.find_splits(key, {F: histograms}) -> {F: split request} -> F.split(key, request)
          L.apply_splits(key, {F: partitions})
End:      L.end_tree(k) -> {F: topology} -> F.end_tree(k, topology)
What moves: L -> F node ids, row counts, and per requested node BFV ciphertexts of packed
gradients over every row (zero outside the node and for unsampled rows), so F never learns which
rows sit in a node or were sampled; for a split F won, an encrypted node indicator over every row.
F -> L encrypted per-bin sums (masked, flooded) and the indicator times F's left indicator
(flooded): L learns the partition of that node's rows only. Never a gradient, a label, a
feature value, a threshold or a row position.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from common.errors import ProtocolError
from models.vlr import FeatureAlignment, StepKey, decode_positions, encode_positions

__all__ = ["Binning", "FeatureAlignment", "SbtConfig", "StepKey", "quantile_bins"]

MAX_BINS = 255  # bin codes are uint8 with one slot for missing values


class SbtConfig(BaseModel):
    """Hyper-parameters of one boosting job; every party uses the same values.

    The `[sbt]` table of a job file; a key that is not listed here is refused by name.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    trees: int = 30
    depth: int = 3
    bins: int = 32
    learning_rate: float = 0.3
    reg_lambda: float = 1.0  # L2 on leaf weights
    min_child_weight: float = 1.0  # minimum hessian sum in a child
    gamma: float = 0.0  # minimum loss reduction to split
    subsample: float = 1.0  # fraction of rows per tree (ignored when goss is set)
    goss: tuple[float, float] | None = None  # (top rate, other rate): gradient-based sampling
    first_tree_label_only: bool = False  # FATE's complete_secure: tree 0 on L's features only
    min_histogram_rows: int = 128  # fewest sampled rows of a node F sums (>= each F's floor)
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> SbtConfig:
        problems = []
        if self.trees < 1 or not 1 <= self.depth <= 12:
            problems.append(f"trees ({self.trees}) must be >= 1 and depth ({self.depth}) 1..12")
        if not 2 <= self.bins <= MAX_BINS:
            problems.append(f"bins {self.bins} must be 2..{MAX_BINS}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            problems.append(f"learning_rate {self.learning_rate} must be > 0")
        if min(self.reg_lambda, self.min_child_weight, self.gamma) < 0:
            problems.append("reg_lambda, min_child_weight and gamma must be >= 0")
        if not 0.0 < self.subsample <= 1.0:
            problems.append(f"subsample {self.subsample} must be in (0, 1]")
        if self.min_histogram_rows < 1:
            problems.append(f"min_histogram_rows {self.min_histogram_rows} must be >= 1")
        if self.goss is not None:
            top, other = self.goss
            if not (0 < top < 1 and 0 < other < 1 and top + other <= 1):
                problems.append(f"goss rates {self.goss} need 0 < top, other and top + other <= 1")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def slots(self) -> int:
        """Bin slots per feature: `bins` value bins and one for missing values."""
        return self.bins + 1


@dataclass(frozen=True)
class Binning:
    """Per-column thresholds (value <= edges[b] means bin <= b) and the codes of every row."""

    edges: tuple[np.ndarray, ...]
    codes: np.ndarray  # (rows, columns) uint8; missing values get code `bins`

    def threshold(self, column: int, bin_index: int) -> float:
        edges = self.edges[column]
        return float(edges[bin_index]) if bin_index < edges.size else math.inf


def column_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """At most bins-1 increasing cut points from the quantiles of the non-missing values."""
    present = values[~np.isnan(values)]
    if present.size == 0:
        return np.zeros(0)
    unique = np.unique(present)
    if unique.size <= bins:
        return unique[:-1]
    cuts: np.ndarray = np.unique(np.quantile(present, np.arange(1, bins) / bins))
    kept: np.ndarray = cuts[cuts < unique[-1]]
    return kept


def apply_edges(values: np.ndarray, edges: np.ndarray, bins: int) -> np.ndarray:
    codes = np.searchsorted(edges, values, side="left").astype(np.uint8)
    codes[np.isnan(values)] = bins
    return codes


def quantile_bins(table: np.ndarray, bins: int) -> Binning:
    """Quantile binning of every column (vectorised per column; NaN is missing)."""
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2:
        raise ValueError("table must be (rows, columns)")
    edges = tuple(column_edges(table[:, j], bins) for j in range(table.shape[1]))
    codes = np.empty(table.shape, dtype=np.uint8)
    for j, e in enumerate(edges):
        codes[:, j] = apply_edges(table[:, j], e, bins)
    return Binning(edges, codes)


# --- wire encodings (little-endian; composite messages are crypto.he frame lists) ------------

_LEVEL = struct.Struct("<4sIII")  # tag, tree, level, count


def encode_head(tag: bytes, tree: int, level: int, count: int) -> bytes:
    return _LEVEL.pack(tag, tree, level, count)


def decode_head(data: bytes, tag: bytes, key: StepKey) -> int:
    if len(data) != _LEVEL.size:
        raise ProtocolError("message header has the wrong size")
    got, tree, level, count = _LEVEL.unpack(data)
    if got != tag or tree != key.epoch or level != key.batch:
        raise ProtocolError(f"{got!r} for tree {tree} level {level} does not answer {key}")
    return int(count)


def encode_ints(values: np.ndarray) -> bytes:
    return np.asarray(values, dtype="<i8").tobytes()


def decode_ints(data: bytes, expected: int | None = None) -> np.ndarray:
    if len(data) % 8:
        raise ProtocolError(f"integer array of {len(data)} bytes")
    values = np.frombuffer(data, dtype="<i8").astype(np.int64)
    if expected is not None and values.size != expected:
        raise ProtocolError(f"expected {expected} integers, got {values.size}")
    return values


def encode_mask(mask: np.ndarray) -> bytes:
    return np.packbits(np.asarray(mask, dtype=bool), bitorder="little").tobytes()


def decode_mask(data: bytes, count: int) -> np.ndarray:
    if len(data) != -(-count // 8):
        raise ProtocolError(f"bitmask of {len(data)} bytes for {count} rows")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little", count=count)
    return bits.astype(bool)


__all__ += [
    "decode_head",
    "decode_ints",
    "decode_mask",
    "decode_positions",
    "encode_head",
    "encode_ints",
    "encode_mask",
    "encode_positions",
]

"""Feature party F of SecureBoost: bins own columns, sums encrypted gradients, keeps its splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.errors import ProtocolError
from crypto.he import BFV_SUITE, FeatureHe, SbtSuite, pack_frames, unpack_frames
from models.sbt import (
    Binning,
    FeatureAlignment,
    SbtConfig,
    StepKey,
    apply_edges,
    column_edges,
    decode_head,
    decode_ints,
    encode_head,
    encode_ints,
)
from models.vlr import StepCache

HIST_REQUEST, HIST_RESPONSE = b"HREQ", b"HRSP"
SPLIT_REQUEST, SPLIT_RESPONSE = b"SREQ", b"SRSP"
TOPOLOGY = b"TOPO"
ABSENT, LEAF, OTHER = -3, -2, -1  # topology codes; a code >= 0 is one of this party's records


@dataclass(frozen=True)
class SplitRecord:
    """An entry of F's private lookup table: left when value <= threshold (NaN: missing_left)."""

    feature: int
    threshold: float
    missing_left: bool

    def goes_left(self, values: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(values), self.missing_left, values <= self.threshold)


class FeatureParty:
    """One feature holder. Per level: histograms -> split; per tree: end_tree.

    The lookup table (record id -> feature, threshold) stays in this object: answers carry
    record ids and encrypted products only. F never sees which rows sit in a node: it sums
    node-masked encrypted gradients over all its aligned rows, and multiplies an encrypted node
    indicator by its own left indicator. It refuses nodes below `config.min_histogram_rows`
    (a job's value, at least the node's own `[floors] min_histogram_rows`).
    """

    def __init__(
        self,
        name: str,
        job: str,
        table: np.ndarray,
        alignment: FeatureAlignment,
        config: SbtConfig,
        *,
        suite: SbtSuite = BFV_SUITE,
    ) -> None:
        table = np.asarray(table, dtype=np.float64)
        if table.ndim != 2 or table.shape[1] == 0:
            raise ValueError("table must be (rows, columns) with at least one column")
        alignment.validate(table.shape[0])
        self.name, self.job, self.config = name, job, config
        self._table, self._alignment, self._suite = table, alignment, suite
        self._he: FeatureHe | None = None
        self._binning: Binning | None = None
        self._records: list[SplitRecord] = []
        self._topologies: list[np.ndarray] = []
        self._steps = StepCache(capacity=16)

    @property
    def n_rows(self) -> int:
        return self._alignment.n_rows

    @property
    def n_features(self) -> int:
        return int(self._table.shape[1])

    @property
    def trees_done(self) -> int:
        return len(self._topologies)

    def aligned_values(self, alignment: FeatureAlignment | None = None) -> np.ndarray:
        """Own columns at training positions (NaN where F has no row)."""
        alignment = alignment or self._alignment
        values = np.full((alignment.n_rows, self.n_features), np.nan)
        values[np.asarray(alignment.positions)] = self._table[np.asarray(alignment.own_rows)]
        return values

    def open(self, public_context: bytes) -> None:
        """Load L's public keys; bin own columns on the aligned rows (missing -> own slot)."""
        self._he = self._suite.load_public(public_context)
        values = self.aligned_values()
        bins = self.config.bins
        edges = tuple(
            column_edges(self._table[np.asarray(self._alignment.own_rows), j], bins)
            for j in range(self.n_features)
        )
        codes = np.empty(values.shape, dtype=np.uint8)
        for j, e in enumerate(edges):
            codes[:, j] = apply_edges(values[:, j], e, bins)
        self._binning = Binning(edges, codes)

    @property
    def he(self) -> FeatureHe:
        return self._opened()[0]

    def _opened(self) -> tuple[FeatureHe, Binning]:
        if self._he is None or self._binning is None:
            raise ProtocolError(f"feature party {self.name} not opened yet")
        return self._he, self._binning

    def _check(self, key: StepKey, step: str) -> None:
        if key.job != self.job or key.step != step:
            raise ProtocolError(f"step {key} is not {step} of job {self.job}")
        if key.epoch != self.trees_done or not 0 <= key.batch < self.config.depth:
            raise ProtocolError(f"step {key} out of order: F has finished {self.trees_done} trees")

    def histograms(self, key: StepKey, request: bytes) -> bytes:
        """Encrypted per-bin sums of every own feature for each requested node."""
        self._check(key, "histograms")
        cached = self._steps.lookup(key, request)
        if cached is not None:
            return cached
        he, binning = self._opened()
        frames = unpack_frames(request)
        count = decode_head(frames[0], HIST_REQUEST, key) if frames else 0
        if len(frames) != 3 + count:
            raise ProtocolError("histogram request frames do not match its node count")
        nodes = decode_ints(frames[1], count)
        counts = decode_ints(frames[2], 2 * count).reshape(count, 2)  # node's rows, sibling's
        floor = self.config.min_histogram_rows
        for node, (rows, sibling) in zip(nodes, counts, strict=True):
            if rows < floor or (node and sibling < floor):
                raise ProtocolError(
                    f"{self.name} refuses histograms for node {node} ({rows} rows, sibling "
                    f"{sibling}): below its minimum of {floor} rows per node")
        out = [encode_head(HIST_RESPONSE, key.epoch, key.batch, count), encode_ints(nodes)]
        out.append(encode_ints(np.array([self.n_features])))
        out += he.histograms_many(frames[3:], binning.codes, self.config.slots)
        return self._steps.store(key, request, pack_frames(out))

    def split(self, key: StepKey, request: bytes) -> bytes:
        """Record each winning split privately; answer record ids and, per split, the encrypted
        node indicator times this party's left indicator over every row (flooded)."""
        self._check(key, "split")
        cached = self._steps.lookup(key, request)
        if cached is not None:
            return cached
        he, binning = self._opened()
        frames = unpack_frames(request)
        count = decode_head(frames[0], SPLIT_REQUEST, key) if frames else 0
        if len(frames) != 2 + count:
            raise ProtocolError("split request frames do not match its split count")
        spec = decode_ints(frames[1], 4 * count).reshape(count, 4)  # node, feature, bin, missing
        out = [encode_head(SPLIT_RESPONSE, key.epoch, key.batch, count)]
        records, products = [], []
        for (_, feature, bin_index, missing_left), frame in zip(spec, frames[2:], strict=True):
            if not 0 <= feature < self.n_features or not 0 <= bin_index < self.config.bins:
                raise ProtocolError(f"split on feature {feature}, bin {bin_index} out of range")
            record = SplitRecord(
                int(feature), binning.threshold(int(feature), int(bin_index)), bool(missing_left)
            )
            codes = binning.codes[:, feature]
            left = np.where(codes == self.config.bins, record.missing_left, codes <= bin_index)
            products.append(he.multiply_slots(frame, left.astype(np.uint64)))
            records.append(len(self._records))
            self._records.append(record)
        out.append(encode_ints(np.asarray(records, dtype=np.int64)))
        return self._steps.store(key, request, pack_frames(out + products))

    def end_tree(self, tree: int, topology: bytes) -> None:
        """Keep the finished tree's shape (heap-ordered node codes) for joint scoring."""
        if tree != self.trees_done:
            if tree < self.trees_done:
                return  # a retry of an applied step
            raise ProtocolError(f"tree {tree} ended, F expected tree {self.trees_done}")
        frames = unpack_frames(topology, max_frames=2)
        if len(frames) != 2:
            raise ProtocolError("a topology has a header and the node codes")
        count = decode_head(frames[0], TOPOLOGY, StepKey(self.job, tree, 0, "end_tree"))
        codes = decode_ints(frames[1], count)
        mine = codes[codes >= 0]
        if mine.size and (mine.max() >= len(self._records) or np.unique(mine).size != mine.size):
            raise ProtocolError("topology names records this party does not hold")
        self._topologies.append(codes)
        self._steps.clear()

    @property
    def next_epoch(self) -> int:
        return self.trees_done

    def state_dict(self) -> dict[str, object]:
        """The lookup table and the finished trees' node codes (bins are rebuilt at open)."""
        size = 2 ** (self.config.depth + 1) - 1
        return {
            "role": "feature", "name": self.name, "job": self.job,
            "record_feature": np.array([r.feature for r in self._records], np.int64),
            "record_threshold": np.array([r.threshold for r in self._records], np.float64),
            "record_missing_left": np.array([r.missing_left for r in self._records], bool),
            "topologies": np.stack(self._topologies) if self._topologies
            else np.zeros((0, size), np.int64),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        if state.get("role") != "feature" or (state.get("name"), state.get("job")) != (
                self.name, self.job):
            raise ValueError("checkpoint is not this job's feature party")
        features = np.asarray(state["record_feature"], np.int64)
        thresholds = np.asarray(state["record_threshold"], np.float64)
        missing = np.asarray(state["record_missing_left"], bool)
        topologies = np.asarray(state["topologies"], np.int64)
        if not features.shape == thresholds.shape == missing.shape or topologies.ndim != 2 or (
                features.size and not 0 <= features.min() <= features.max() < self.n_features):
            raise ValueError("checkpoint's lookup table does not fit this party's columns")
        self._records = [SplitRecord(int(f), float(t), bool(m))
                         for f, t, m in zip(features, thresholds, missing, strict=True)]
        self._topologies = [row.copy() for row in topologies]
        self._steps.clear()

    def topology(self, tree: int) -> np.ndarray:
        return self._topologies[tree].copy()

    def records(self) -> list[SplitRecord]:
        """This party's whole lookup table (for its own model file, never for the wire)."""
        return list(self._records)

    def record(self, record_id: int) -> SplitRecord:
        """A lookup entry, for this party's own scoring only."""
        return self._records[record_id]

"""Joint scoring of SecureBoost trees: each F evaluates its own splits; L learns only the leaf.

Per request (StepKey(job, epoch=request, batch=0, step="score")):
  L.request(key, positions, own rows) -> bytes           encrypted selectors s[row, tree, leaf]
     (1 where L's own splits allow the leaf, else 0; BFV slots under L's scoring key)
  every F.score(key, request) -> bytes                   [s * r], r = 0 on the leaves F's splits
     allow, uniform nonzero elsewhere (flooded, re-randomised)
  relay.combine(key, {F: part}) -> bytes                 sum over the Fs (the coordinator; no key)
  L.finish(key, combined) -> margins                     the one leaf per (row, tree) with s = 1
     and a zero sum is the leaf reached; the other allowed leaves decrypt to uniform noise, so L
     learns no F decision beyond the leaf, F learns nothing, the relay sees ciphertexts only.

Two ways to build the scorers: from the live training roles (`LabelScorer(label)`,
`FeatureScorer(party)`: rows are training positions), or from the parts each party saved
(`LabelModel.from_saved`, `FeatureModel.from_saved`): then the request names rows 0..n-1 of an
explicit list (the keyed-hash ids travelling beside it) and each F passes `score(..., values=)`
its own columns of those rows, NaN for an id it does not know, which takes the missing-value
direction at its split nodes, as training did for the rows outside F's alignment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.errors import ProtocolError
from crypto.he import (
    BFV_SUITE,
    FeatureHe,
    LabelHe,
    SbtSuite,
    pack_frames,
    random_nonzero,
    unpack_frames,
)
from models.sbt import FeatureAlignment, StepKey, decode_head, encode_head, encode_positions
from models.sbt.feature import LEAF, FeatureParty, SplitRecord
from models.sbt.label import LabelParty, Tree
from models.vlr import decode_positions

SCORE_REQUEST, SCORE_PART = b"SCRQ", b"SCPT"


def leaf_paths(owner_codes: np.ndarray) -> list[list[tuple[int, bool]]]:
    """For each leaf (heap order) its root path as (node, went left) pairs."""
    paths = []
    for leaf in np.flatnonzero(owner_codes == LEAF):
        path, child = [], int(leaf)
        while child:
            parent = (child - 1) // 2
            path.append((parent, child == 2 * parent + 1))
            child = parent
        paths.append(path[::-1])
    return paths


def allowed_leaves(
    paths: list[list[tuple[int, bool]]], go_left: Mapping[int, np.ndarray], rows: int, width: int
) -> np.ndarray:
    """(rows, width) mask: leaf l is allowed when every own node on its path sends the row there."""
    allowed = np.zeros((rows, width), dtype=bool)
    for slot, path in enumerate(paths):
        mask = np.ones(rows, dtype=bool)
        for node, left in path:
            if node in go_left:
                mask &= go_left[node] if left else ~go_left[node]
        allowed[:, slot] = mask
    return allowed


def leaf_width(codes: np.ndarray) -> int:
    """Leaf slots of a heap-ordered tree of 2^(depth+1) - 1 nodes: 2^depth."""
    return (int(np.asarray(codes).size) + 1) // 2


def rows_values(table: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A party's columns of the listed rows (row -1: an id it does not know -> all NaN)."""
    table = np.asarray(table, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64)
    values = np.full((rows.size, table.shape[1]), np.nan)
    known = rows >= 0
    values[known] = table[rows[known]]
    return values


@dataclass
class _Pending:
    rows: int
    selectors: np.ndarray  # (rows, trees, width) bool


@dataclass(frozen=True)
class LabelModel:
    """What L scores with: its trees, base margin, the Fs' names and its own scoring key."""

    trees: list[Tree]
    base_margin: float
    feature_parties: list[str]
    he: LabelHe

    @classmethod
    def from_party(cls, label: LabelParty) -> LabelModel:
        return cls(list(label.trees), float(label.base_margin), list(label.feature_parties),
                   label.he)

    @classmethod
    def from_saved(cls, saved: Mapping[str, Any], he: LabelHe) -> LabelModel:
        """From L's saved model.sbt dict, with a scoring key of L's own (not the training one)."""
        trees = list(saved["trees"])
        if not trees or not all(isinstance(t, Tree) for t in trees):
            raise ProtocolError("a saved SecureBoost model needs its trees")
        return cls(trees, float(saved["base_margin"]), list(saved["feature_parties"]), he)


class LabelScorer:
    """L's scoring steps over its trained trees."""

    def __init__(self, label: LabelParty | LabelModel) -> None:
        model = label if isinstance(label, LabelModel) else LabelModel.from_party(label)
        self.model = model
        self.width = leaf_width(model.trees[0].owner)
        self._pending: dict[StepKey, _Pending] = {}

    def _own_go_left(self, tree: Tree, values: np.ndarray) -> dict[int, np.ndarray]:
        out = {}
        for node in np.flatnonzero(tree.owner == 0):
            x = values[:, tree.feature[node]]
            out[int(node)] = np.where(
                np.isnan(x), tree.missing_left[node], x <= tree.threshold[node]
            )
        return out

    def request(self, key: StepKey, positions: np.ndarray, own_rows: np.ndarray) -> bytes:
        """Encrypted selectors for the requested rows (own_rows: L's columns of those rows)."""
        values = np.asarray(own_rows, dtype=np.float64)
        positions = np.asarray(positions, dtype=np.int64)
        if values.ndim != 2 or values.shape[0] != positions.size or positions.size == 0:
            raise ValueError("own_rows must hold L's columns of every requested row")
        trees = self.model.trees
        selectors = np.zeros((positions.size, len(trees), self.width), dtype=bool)
        for t, tree in enumerate(trees):
            paths = leaf_paths(tree.owner)
            go_left = self._own_go_left(tree, values)
            selectors[:, t] = allowed_leaves(paths, go_left, positions.size, self.width)
        self._pending[key] = _Pending(positions.size, selectors)
        head = encode_head(SCORE_REQUEST, key.epoch, key.batch, len(trees))
        cipher = self.model.he.encrypt_slots(selectors.reshape(-1).astype(np.uint64))
        return pack_frames([head, encode_positions(positions), cipher])

    def discard(self, key: StepKey) -> None:
        """Forget a request that will never be answered (the call failed)."""
        self._pending.pop(key, None)

    def finish(self, key: StepKey, combined: bytes | None) -> np.ndarray:
        """Margins of the requested rows from the leaves reached (combined None: no F at all)."""
        return self.margins(self.finish_leaves(key, combined))

    def finish_leaves(self, key: StepKey, combined: bytes | None) -> np.ndarray:
        """(rows, trees) leaf slot reached by each requested row in each tree."""
        pending = self._pending.pop(key, None)
        if pending is None:
            raise ProtocolError(f"no scoring request {key} pending")
        selectors = pending.selectors
        if combined is None:
            if self.model.feature_parties:
                raise ProtocolError("scoring needs the Fs' combined answer")
            hit = selectors
        else:
            values = self.model.he.decrypt_slots(combined)
            if values.size != selectors.size:
                raise ProtocolError(f"{values.size} slots answered, {selectors.size} asked")
            hit = selectors & (values.reshape(selectors.shape) == 0)
        if not np.all(hit.sum(axis=2) == 1):
            raise ProtocolError("a row reached no leaf or several leaves in some tree")
        slots: np.ndarray = hit.argmax(axis=2)
        return slots

    def margins(self, slot: np.ndarray) -> np.ndarray:
        """Base margin plus the weight of each tree's reached leaf (slot: leaf_paths order)."""
        margin = np.full(slot.shape[0], self.model.base_margin)
        for t, tree in enumerate(self.model.trees):
            margin = margin + tree.value[tree.leaves()[slot[:, t]]]
        return margin

    def request_rows(self, key: StepKey, own_rows: np.ndarray) -> bytes:
        """A request for rows 0..n-1 of an explicit list (L's columns of them, NaN: unknown)."""
        return self.request(key, np.arange(np.asarray(own_rows).shape[0]), own_rows)


@dataclass(frozen=True)
class FeatureModel:
    """What F scores with: its private lookup table, its tree shapes, L's public scoring key."""

    records: Sequence[SplitRecord]
    topologies: Sequence[np.ndarray]
    he: FeatureHe

    @classmethod
    def from_party(cls, party: FeatureParty) -> FeatureModel:
        return cls(party.records(), [party.topology(t) for t in range(party.trees_done)],
                   party.he)

    @classmethod
    def from_saved(cls, saved: Mapping[str, Any], public_context: bytes, *,
                   suite: SbtSuite = BFV_SUITE) -> FeatureModel:
        """From F's saved model.sbt dict and the requesting bank's public context."""
        records = list(saved["records"])
        topologies = [np.asarray(t, dtype=np.int64) for t in saved["topologies"]]
        if not all(isinstance(r, SplitRecord) for r in records):
            raise ProtocolError("a saved lookup table holds something other than split records")
        for codes in topologies:
            mine = codes[codes >= 0]
            if mine.size and mine.max() >= len(records):
                raise ProtocolError("a saved topology names records this party does not hold")
        return cls(records, topologies, suite.load_public(public_context))

    def allowed(self, tree: int, values: np.ndarray) -> np.ndarray:
        """(rows, width): the leaves of `tree` this party's own splits allow for each row."""
        codes = self.topologies[tree]
        go_left = {}
        for node in np.flatnonzero(codes >= 0):
            record = self.records[int(codes[node])]
            go_left[int(node)] = record.goes_left(values[:, record.feature])
        return allowed_leaves(leaf_paths(codes), go_left, values.shape[0], leaf_width(codes))


class FeatureScorer:
    """F's scoring step over its own lookup table; `table`/`alignment` select the training rows
    a position-keyed request names (a request for an explicit list brings `values` instead)."""

    def __init__(
        self,
        party: FeatureParty | FeatureModel,
        table: np.ndarray | None = None,
        alignment: FeatureAlignment | None = None,
    ) -> None:
        self._values: np.ndarray | None = None
        if isinstance(party, FeatureModel):
            self.model = party
        else:
            self.model = FeatureModel.from_party(party)
            self._values = self._training_values(party, table, alignment)

    @staticmethod
    def _training_values(
        party: FeatureParty, table: np.ndarray | None, alignment: FeatureAlignment | None
    ) -> np.ndarray:
        if table is None:
            return party.aligned_values(alignment)
        if alignment is None:
            raise ValueError("a scoring table needs its alignment")
        table = np.asarray(table, dtype=np.float64)
        alignment.validate(table.shape[0])
        values = np.full((alignment.n_rows, table.shape[1]), np.nan)
        values[np.asarray(alignment.positions)] = table[np.asarray(alignment.own_rows)]
        return values

    def score(self, key: StepKey, request: bytes, values: np.ndarray | None = None) -> bytes:
        """[s * r]: r is 0 on the leaves own splits allow, uniform nonzero elsewhere.

        values: own columns of the request's explicit row list (NaN for an unknown id)."""
        frames = unpack_frames(request, max_frames=3)
        if len(frames) != 3:
            raise ProtocolError("a scoring request has a header, positions and selectors")
        trees = decode_head(frames[0], SCORE_REQUEST, key)
        held = len(self.model.topologies)
        if trees != held:
            raise ProtocolError(f"request scores {trees} trees, this party holds {held}")
        table = self._values if values is None else np.asarray(values, dtype=np.float64)
        if table is None or table.ndim != 2:
            raise ProtocolError("a request for an explicit row list needs this party's rows")
        rows = decode_positions(frames[1], table.shape[0])
        chosen = table[rows]
        allowed = np.stack([self.model.allowed(t, chosen) for t in range(trees)], axis=1)
        he = self.model.he
        factors = np.where(
            allowed.reshape(-1), np.uint64(0), random_nonzero(allowed.size, he.score_modulus)
        )
        head = encode_head(SCORE_PART, key.epoch, key.batch, trees)
        return pack_frames([head, he.multiply_slots(frames[2], factors)])


class ScoreRelay:
    """The coordinator's step: adds the Fs' encrypted answers with L's public context only."""

    def __init__(self, public_context: bytes, *, suite: SbtSuite = BFV_SUITE) -> None:
        self._he = suite.load_public(public_context)

    def combine(self, key: StepKey, parts: Mapping[str, bytes]) -> bytes:
        ciphers = []
        for name in sorted(parts):
            frames = unpack_frames(parts[name], max_frames=2)
            if len(frames) != 2:
                raise ProtocolError(f"{name}'s scoring answer is malformed")
            decode_head(frames[0], SCORE_PART, key)
            ciphers.append(frames[1])
        return self._he.add_slots(ciphers)

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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from common.errors import ProtocolError
from crypto.ckks import pack_frames, unpack_frames
from models.sbt import FeatureAlignment, StepKey, decode_head, encode_head, encode_positions
from models.sbt.feature import LEAF, FeatureParty
from models.sbt.he import BFV_SUITE, SbtSuite, random_nonzero
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


@dataclass
class _Pending:
    rows: int
    selectors: np.ndarray  # (rows, trees, width) bool


class LabelScorer:
    """L's scoring steps over its trained trees."""

    def __init__(self, label: LabelParty) -> None:
        self.label = label
        self.width = 2**label.config.depth
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
        trees = self.label.trees
        selectors = np.zeros((positions.size, len(trees), self.width), dtype=bool)
        for t, tree in enumerate(trees):
            paths = leaf_paths(tree.owner)
            go_left = self._own_go_left(tree, values)
            selectors[:, t] = allowed_leaves(paths, go_left, positions.size, self.width)
        self._pending[key] = _Pending(positions.size, selectors)
        head = encode_head(SCORE_REQUEST, key.epoch, key.batch, len(trees))
        cipher = self.label.he.encrypt_slots(selectors.reshape(-1).astype(np.uint64))
        return pack_frames([head, encode_positions(positions), cipher])

    def finish(self, key: StepKey, combined: bytes | None) -> np.ndarray:
        """Margins of the requested rows from the leaves reached (combined None: no F at all)."""
        pending = self._pending.pop(key, None)
        if pending is None:
            raise ProtocolError(f"no scoring request {key} pending")
        selectors = pending.selectors
        if combined is None:
            if self.label.feature_parties:
                raise ProtocolError("scoring needs the Fs' combined answer")
            hit = selectors
        else:
            values = self.label.he.decrypt_slots(combined)
            if values.size != selectors.size:
                raise ProtocolError(f"{values.size} slots answered, {selectors.size} asked")
            hit = selectors & (values.reshape(selectors.shape) == 0)
        if not np.all(hit.sum(axis=2) == 1):
            raise ProtocolError("a row reached no leaf or several leaves in some tree")
        margin = np.full(pending.rows, self.label.base_margin)
        slot = hit.argmax(axis=2)
        for t, tree in enumerate(self.label.trees):
            margin = margin + tree.value[tree.leaves()[slot[:, t]]]
        return margin


class FeatureScorer:
    """F's scoring step over its own lookup table; `table`/`alignment` select the scored rows."""

    def __init__(
        self,
        party: FeatureParty,
        table: np.ndarray | None = None,
        alignment: FeatureAlignment | None = None,
    ) -> None:
        self.party = party
        if table is None:
            self._values = party.aligned_values(alignment)
        else:
            if alignment is None:
                raise ValueError("a scoring table needs its alignment")
            table = np.asarray(table, dtype=np.float64)
            alignment.validate(table.shape[0])
            self._values = np.full((alignment.n_rows, table.shape[1]), np.nan)
            self._values[np.asarray(alignment.positions)] = table[np.asarray(alignment.own_rows)]

    def score(self, key: StepKey, request: bytes) -> bytes:
        """[s * r]: r is 0 on the leaves own splits allow, uniform nonzero elsewhere."""
        frames = unpack_frames(request, max_frames=3)
        if len(frames) != 3:
            raise ProtocolError("a scoring request has a header, positions and selectors")
        trees = decode_head(frames[0], SCORE_REQUEST, key)
        if trees != self.party.trees_done:
            raise ProtocolError(
                f"request scores {trees} trees, this party holds {self.party.trees_done}"
            )
        rows = decode_positions(frames[1], self._values.shape[0])
        values = self._values[rows]
        width = 2**self.party.config.depth
        allowed = np.zeros((rows.size, trees, width), dtype=bool)
        for t in range(trees):
            codes = self.party.topology(t)
            go_left = {}
            for node in np.flatnonzero(codes >= 0):
                record = self.party.record(int(codes[node]))
                go_left[int(node)] = record.goes_left(values[:, record.feature])
            allowed[:, t] = allowed_leaves(leaf_paths(codes), go_left, rows.size, width)
        he = self.party.he
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

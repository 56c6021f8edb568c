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
(`models.sbt.codec`, with the bank's own scoring key): then the request names rows 0..n-1 of an
explicit list (the keyed-hash ids travelling beside it) and each F passes `score(..., values=)`
its own columns of those rows, NaN for an id it does not know, which takes the missing-value
direction at its split nodes, as training did for the rows outside F's alignment.
`SBT_SCORING` wraps the saved-parts path as a `models.scoring.ScoringKind`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import ProtocolError
from crypto.he import (
    BFV_SUITE,
    BfvPrivate,
    FeatureHe,
    LabelHe,
    SbtSuite,
    pack_frames,
    random_nonzero,
    unpack_frames,
)
from models.sbt import FeatureAlignment, StepKey, decode_head, encode_head, encode_positions
from models.sbt.codec import FeatureModel, LabelModel, load_feature_model, load_label_model
from models.sbt.feature import LEAF, FeatureParty
from models.sbt.label import LabelParty
from models.sbt.tree import Tree
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


class LabelScorer:
    """L's scoring steps over its trained trees: a live party's with its training key, or a
    saved model's with a scoring key of L's own (`he`, never the training key)."""

    def __init__(self, label: LabelParty | LabelModel, he: LabelHe | None = None) -> None:
        if isinstance(label, LabelParty):
            model, he = LabelModel.from_party(label), label.he
        elif he is None:
            raise ValueError("a saved SecureBoost model scores with a key of L's own")
        else:
            model = label
        self.model = model
        self.he: LabelHe = he
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
        cipher = self.he.encrypt_slots(selectors.reshape(-1).astype(np.uint64))
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
            values = self.he.decrypt_slots(combined)
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


class FeatureScorer:
    """F's scoring step over its own lookup table; `table`/`alignment` select the training rows
    a position-keyed request names (a request for an explicit list brings `values` instead).
    A saved model (`FeatureModel`) scores under the requesting bank's public key `he`."""

    def __init__(
        self,
        party: FeatureParty | FeatureModel,
        table: np.ndarray | None = None,
        alignment: FeatureAlignment | None = None,
        *,
        he: FeatureHe | None = None,
    ) -> None:
        self._values: np.ndarray | None = None
        if isinstance(party, FeatureParty):
            self.model, self.he = FeatureModel.from_party(party), party.he
            self._values = self._training_values(party, table, alignment)
        elif he is None:
            raise ValueError("a saved SecureBoost model scores under the bank's public key")
        else:
            self.model, self.he = party, he

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

    def allowed(self, tree: int, values: np.ndarray) -> np.ndarray:
        """(rows, width): the leaves of `tree` this party's own splits allow for each row."""
        codes = self.model.topologies[tree]
        go_left = {}
        for node in np.flatnonzero(codes >= 0):
            record = self.model.records[int(codes[node])]
            go_left[int(node)] = record.goes_left(values[:, record.feature])
        return allowed_leaves(leaf_paths(codes), go_left, values.shape[0], leaf_width(codes))

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
        allowed = np.stack([self.allowed(t, chosen) for t in range(trees)], axis=1)
        he = self.he
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


def _unknown_as_nan(rows: np.ndarray, present: np.ndarray) -> np.ndarray:
    """A party's columns of the requested rows, NaN where it does not hold the id."""
    return np.where(np.asarray(present, bool)[:, None], np.asarray(rows, np.float64), np.nan)


class _BankSbt:
    """The bank's SecureBoost part: its trees under a BFV scoring key of its own."""

    def __init__(self, model: LabelModel, he: BfvPrivate, job: str) -> None:
        self.scorer, self.key_pair = LabelScorer(model, he), he
        self.job, self._features = job, model.columns

    @property
    def features(self) -> tuple[str, ...]:
        return self._features

    @property
    def reason_names(self) -> tuple[str, ...]:
        return self._features

    @property
    def public_context(self) -> bytes:
        return self.key_pair.public_bytes()

    @property
    def private_key(self) -> bytes:
        return self.key_pair.private_bytes()

    def _key(self, number: int) -> StepKey:
        return StepKey(self.job, number, 0, "score")

    def request(self, number: int, own_rows: np.ndarray, present: np.ndarray) -> bytes:
        return self.scorer.request_rows(self._key(number), _unknown_as_nan(own_rows, present))

    def discard(self, number: int) -> None:
        self.scorer.discard(self._key(number))

    def finish(self, number: int, own_rows: np.ndarray, present: np.ndarray,
               others: np.ndarray, combined: bytes) -> tuple[np.ndarray, np.ndarray]:
        slots = self.scorer.finish_leaves(self._key(number), combined)
        return self.scorer.margins(slots), self._reason_weights(slots)

    def _reason_weights(self, slots: np.ndarray) -> np.ndarray:
        """Own split features on the reached paths of trees whose leaf raises the margin,
        weighted by that leaf's weight (own splits only)."""
        weight = np.zeros((len(slots), len(self._features)))
        for t, tree in enumerate(self.scorer.model.trees):
            paths, leaves = leaf_paths(tree.owner), tree.leaves()
            for slot, path in enumerate(paths):
                value = float(tree.value[leaves[slot]])
                reached = slots[:, t] == slot
                if value <= 0 or not reached.any():
                    continue
                for node, _ in path:
                    if tree.owner[node] == 0:
                        weight[reached, tree.feature[node]] += value
        return weight


class _FeatureSbt:
    """A feature node's SecureBoost part: its lookup table under the bank's public key."""

    def __init__(self, model: FeatureModel, he: FeatureHe, job: str) -> None:
        self.scorer, self.job = FeatureScorer(model, he=he), job
        self.features = model.columns

    def partial(self, number: int, values: np.ndarray, present: np.ndarray,
                request: bytes) -> tuple[np.ndarray, bytes]:
        part = self.scorer.score(StepKey(self.job, number, 0, "score"), request,
                                 _unknown_as_nan(values, present))
        return np.zeros(len(present)), part


class _RelaySbt:
    """The coordinator's SecureBoost part: adds the tree parts under the bank's public key."""

    def __init__(self, relay: ScoreRelay, job: str) -> None:
        self.scorer, self.job = relay, job

    def combine(self, number: int, parts: Mapping[str, bytes]) -> bytes:
        return self.scorer.combine(StepKey(self.job, number, 0, "score"), parts)


@dataclass(frozen=True)
class SbtScoring:
    """Joint scoring of a SecureBoost model (`models.scoring.ScoringKind`)."""

    model_file: str = "sbt_model.json"
    key_file: str = "bank.bfv"
    legacy_file: str = "model.sbt"  # pickle, before format v1: refused by the codec

    def _read(self, folder: Path, job: str) -> bytes:
        for name in (self.model_file, self.legacy_file):
            if (folder / name).is_file():
                return (folder / name).read_bytes()
        raise ProtocolError(f"no SecureBoost model of job {job} here ({folder / self.model_file})")

    def load_bank(self, folder: Path, job: str, private_key: bytes) -> _BankSbt:
        model = load_label_model(self._read(folder, job))
        he = BfvPrivate.from_private_bytes(private_key) if private_key else BFV_SUITE.make_private()
        if not isinstance(he, BfvPrivate):
            raise ProtocolError("the SecureBoost suite made no persistable BFV key")
        return _BankSbt(model, he, job)

    def load_feature(self, folder: Path, job: str, public_context: bytes) -> _FeatureSbt:
        if not public_context:
            raise ProtocolError("a SecureBoost scoring set-up needs the bank's BFV context")
        model = load_feature_model(self._read(folder, job))
        return _FeatureSbt(model, BFV_SUITE.load_public(public_context), job)

    def relay(self, job: str, public_context: bytes) -> _RelaySbt:
        """A secret key is refused: only the public frame layout loads."""
        if not public_context:
            raise ProtocolError("SecureBoost scoring set-up carries no public BFV context")
        return _RelaySbt(ScoreRelay(public_context), job)


SBT_SCORING = SbtScoring()

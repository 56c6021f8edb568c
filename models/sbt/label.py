"""Label party L of SecureBoost: gradients, encrypted requests, split finding, trees and leaves."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from common.errors import ProtocolError
from crypto.he import BFV_SUITE, LabelHe, SbtSuite, pack_frames, unpack_frames
from models.labels import labelled_table
from models.metrics import auc, ks, log_loss
from models.sbt import (
    SbtConfig,
    StepKey,
    decode_head,
    decode_ints,
    encode_head,
    encode_ints,
    quantile_bins,
)
from models.sbt.feature import (
    HIST_REQUEST,
    HIST_RESPONSE,
    LEAF,
    OTHER,
    SPLIT_REQUEST,
    SPLIT_RESPONSE,
    TOPOLOGY,
)
from models.sbt.tree import (
    MIN_GAIN,
    Tree,
    TreeReport,
    quantize,
    sample_rows,
    split_gains,
    trees_from_state,
    trees_state,
    unpack_sums,
)
from models.vlr import StepCache, digest


@dataclass
class _Build:
    tree: int
    g: np.ndarray
    h: np.ndarray
    sampled: np.ndarray
    bits: int  # quantisation: G = round(g 2^bits), H = round(h 2^bits)
    shift: int  # packed value G + 2^shift H
    gq: np.ndarray
    hq: np.ndarray
    packed: np.ndarray
    node_of: np.ndarray
    structure: Tree
    level: int = 0
    frontier: list[int] = field(default_factory=lambda: [0])
    requested: list[int] = field(default_factory=list)
    parent_hist: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    node_hist: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    pending: dict[str, list[int]] = field(default_factory=dict)
    split_rows: dict[int, np.ndarray] = field(default_factory=dict)

    def sampled_in(self, node: int) -> int:
        return int(np.count_nonzero((self.node_of == node) & self.sampled))


class LabelParty:
    """The bank: holds labels and own columns, builds every tree, keeps the model."""

    def __init__(
        self,
        job: str,
        features: np.ndarray,
        labels: np.ndarray,
        feature_parties: Sequence[str],
        config: SbtConfig,
        *,
        suite: SbtSuite = BFV_SUITE,
    ) -> None:
        features, labels = labelled_table(features, labels)
        self.job, self.config, self.labels = job, config, labels
        self.feature_parties = tuple(sorted(feature_parties))
        self.binning = quantile_bins(features, config.bins)
        self._features = features
        self._suite = suite
        self._he: LabelHe | None = None
        self._party_width: dict[str, int] = {}
        mean = float(labels.mean())
        self.base_margin = math.log(mean / (1.0 - mean))
        self.margin = np.full(labels.size, self.base_margin)
        self.trees: list[Tree] = []
        self.reports: list[TreeReport] = []
        self._build: _Build | None = None
        self._applied: StepKey | None = None
        self._steps = StepCache(capacity=16)

    @property
    def n_rows(self) -> int:
        return int(self.labels.size)

    @property
    def done(self) -> bool:
        return len(self.trees) >= self.config.trees

    @property
    def suite(self) -> SbtSuite:
        return self._suite

    @property
    def he(self) -> LabelHe:
        if self._he is None:
            raise ProtocolError("label party not opened yet")
        return self._he

    def open(self) -> bytes:
        """Make L's key pairs; the public bytes go to every F (and the scoring relay)."""
        self._he = self._suite.make_private()
        return self._he.public_bytes()

    @property
    def next_epoch(self) -> int:
        """The next tree to build (a resumed job starts here)."""
        return len(self.trees)

    def state_dict(self) -> dict[str, object]:
        """Finished trees, margins and reports (no key: a resumed run makes fresh keys)."""
        return {"role": "label", "job": self.job, "margin": self.margin.copy(),
                "reports": [asdict(r) for r in self.reports],
                "party_width": dict(self._party_width),
                **trees_state(self.trees, self.config.depth)}

    def load_state_dict(self, state: dict[str, object]) -> None:
        if state.get("role") != "label" or state.get("job") != self.job:
            raise ValueError("checkpoint is not this job's label party")
        margin = np.asarray(state["margin"], dtype=np.float64)
        trees = trees_from_state(state, self.config.depth)
        reports = [TreeReport(**r) for r in state["reports"]]  # type: ignore[attr-defined]
        if margin.shape != self.margin.shape or len(reports) != len(trees):
            raise ValueError("checkpoint does not match this job's rows or trees")
        self.margin, self.trees, self.reports = margin, trees, reports
        self._party_width = {str(k): int(v) for k, v in
                             state["party_width"].items()}  # type: ignore[attr-defined]
        self._build, self._applied = None, None
        self._steps.clear()

    def owner_index(self, party: str) -> int:
        return self.feature_parties.index(party) + 1

    # -- tree construction ---------------------------------------------------------------
    def _check(self, key: StepKey, step: str) -> None:
        if key.job != self.job or key.step != step:
            raise ProtocolError(f"step {key} is not {step} of job {self.job}")
        if key.epoch != len(self.trees) or not 0 <= key.batch < self.config.depth:
            raise ProtocolError(f"step {key} out of order: {len(self.trees)} trees built")

    def _start(self, tree: int) -> _Build:
        p = 1.0 / (1.0 + np.exp(-self.margin))
        g, h = p - self.labels, p * (1.0 - p)
        sampled, weights = sample_rows(g, self.config, tree)
        g, h = np.where(sampled, g * weights, 0.0), np.where(sampled, h * weights, 0.0)
        bits, shift, gq, hq, packed = quantize(g, h, self.he.plain_modulus)
        node_of = np.zeros(self.n_rows, np.int64)
        return _Build(
            tree, g, h, sampled, bits, shift, gq, hq, packed, node_of, Tree.empty(self.config.depth)
        )

    def _uses_parties(self, build: _Build) -> bool:
        return bool(self.feature_parties) and not (
            self.config.first_tree_label_only and build.tree == 0
        )

    def _rows(self, build: _Build, node: int, sampled_only: bool) -> np.ndarray:
        mask = build.node_of == node
        return np.flatnonzero(mask & build.sampled if sampled_only else mask)

    def histogram_request(self, key: StepKey) -> bytes | None:
        """Encrypted packed gradients of the nodes F must sum (None when no F takes part)."""
        self._check(key, "histograms")
        if key.batch == 0 and (self._build is None or self._build.tree != key.epoch):
            self._build = self._start(key.epoch)
        build = self._built(key)
        cached = self._steps.lookup(key, b"")
        if cached is not None:
            return cached or None
        build.requested = self._eligible(build)
        if not build.requested:
            self._steps.store(key, b"", b"")
            return None
        counts = [[build.sampled_in(n), build.sampled_in(n + 1) if n else 0]
                  for n in build.requested]
        frames = [
            encode_head(HIST_REQUEST, key.epoch, key.batch, len(build.requested)),
            encode_ints(np.array(build.requested)),
            encode_ints(np.array(counts).reshape(-1)),
        ]
        for node in build.requested:  # over every row: zero outside the node and unsampled
            inside = (build.node_of == node) & build.sampled
            values = np.where(inside, build.packed, np.uint64(0))
            frames.append(self.he.encrypt_chunks(values, self.config.slots))
        return self._steps.store(key, b"", pack_frames(frames))

    def _eligible(self, build: _Build) -> list[int]:
        """Nodes whose F sums L asks for: the root, then the left child of each split node that
        has F sums (the right one is parent minus left), when both children reach the floor.
        Every node L can derive sums for is then at or above the floor."""
        if not self._uses_parties(build):
            return []
        floor = self.config.min_histogram_rows
        if build.level == 0:
            return [0] if build.sampled_in(0) >= floor else []
        return [n for n in build.frontier if n % 2 and build.parent_hist.get((n - 1) // 2)
                and min(build.sampled_in(n), build.sampled_in(n + 1)) >= floor]

    def _built(self, key: StepKey) -> _Build:
        if self._build is None or self._build.tree != key.epoch or self._build.level != key.batch:
            raise ProtocolError(f"step {key} does not match the tree under construction")
        return self._build

    def _decode_histograms(
        self, key: StepKey, build: _Build, responses: Mapping[str, bytes]
    ) -> dict[int, dict[str, tuple[np.ndarray, np.ndarray]]]:
        asked = build.requested
        expected = self.feature_parties if asked else ()
        if tuple(sorted(responses)) != expected:
            raise ProtocolError(f"histograms expected from {expected}, got {sorted(responses)}")
        slots, t = self.config.slots, self.he.plain_modulus
        decoded: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = {n: {} for n in asked}
        for party, data in responses.items():
            frames = unpack_frames(data)
            count = decode_head(frames[0], HIST_RESPONSE, key) if frames else -1
            if count != len(asked) or len(frames) != 3 + count:
                raise ProtocolError(f"{party} answered {count} nodes, {len(asked)} were asked")
            if not np.array_equal(decode_ints(frames[1], count), asked):
                raise ProtocolError(f"{party} answered other nodes than asked")
            width = int(decode_ints(frames[2], 1)[0])
            if width != self._party_width.setdefault(party, width) or width < 1:
                raise ProtocolError(f"{party} changed its feature count to {width}")
            for node, blob in zip(asked, frames[3:], strict=True):
                residues = self.he.decrypt_histograms(blob, width, slots)
                decoded[node][party] = unpack_sums(residues, build.shift, t)
        return decoded

    def _own_histogram(self, build: _Build, node: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self._rows(build, node, True)
        slots, cols = self.config.slots, self.binning.codes.shape[1]
        index = (np.arange(cols) * slots + self.binning.codes[rows].astype(np.int64)).reshape(-1)
        size = cols * slots
        g = np.bincount(index, np.repeat(build.gq[rows], cols).astype(np.float64), size)
        h = np.bincount(index, np.repeat(build.hq[rows], cols).astype(np.float64), size)
        return g.reshape(cols, slots), h.reshape(cols, slots)

    def find_splits(self, key: StepKey, responses: Mapping[str, bytes]) -> dict[str, bytes]:
        """Decrypt F's bin sums, pick each node's best split; split requests for winning Fs."""
        self._check(key, "find_splits")
        build = self._built(key)
        request = b"".join(n.encode() + b"\0" + digest(responses[n]) for n in sorted(responses))
        cached = self._steps.lookup(key, request)
        if cached is not None:
            return _unpack_party_map(cached)
        decoded = self._decode_histograms(key, build, responses)
        scale = 2.0**-build.bits
        build.node_hist, build.pending, build.split_rows = {}, {}, {}
        out: dict[str, list[bytes]] = {}
        for node in build.frontier:
            party_hist = self._party_histograms(build, node, decoded)
            build.node_hist[node] = party_hist
            rows = self._rows(build, node, True)
            g_total, h_total = build.gq[rows].sum() * scale, build.hq[rows].sum() * scale
            own_g, own_h = self._own_histogram(build, node)
            candidates = [
                ("", split_gains(own_g * scale, own_h * scale, g_total, h_total, self.config))
            ]
            for party, (pg, ph) in party_hist.items():
                gains = split_gains(pg * scale, ph * scale, g_total, h_total, self.config)
                candidates.append((party, gains))
            flat = np.concatenate([c.reshape(-1) for _, c in candidates])
            if flat.size == 0 or not flat.max() > max(self.config.gamma, MIN_GAIN):
                build.structure.owner[node] = LEAF
                continue
            best = int(np.argmax(flat))
            sizes = np.cumsum([c.size for _, c in candidates])
            which = int(np.searchsorted(sizes, best, side="right"))
            party, gains = candidates[which]
            best -= int(sizes[which - 1]) if which else 0
            feature, bin_index, missing_left = np.unravel_index(best, gains.shape)
            self._record_split(build, node, party, int(feature), int(bin_index), bool(missing_left))
            if party:
                build.pending.setdefault(party, []).append(node)
                build.split_rows[node] = self._rows(build, node, False)
                spec = encode_ints(np.array([node, feature, bin_index, missing_left]))
                inside = (build.node_of == node).astype(np.uint64)  # an encrypted indicator
                out.setdefault(party, []).extend([spec, self.he.encrypt_slots(inside)])
        requests = {
            party: pack_frames(
                [
                    encode_head(SPLIT_REQUEST, key.epoch, key.batch, len(parts) // 2),
                    b"".join(parts[0::2]),
                    *parts[1::2],
                ]
            )
            for party, parts in out.items()
        }
        self._steps.store(key, request, _pack_party_map(requests))
        return requests

    def _party_histograms(
        self,
        build: _Build,
        node: int,
        decoded: Mapping[int, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """F's sums for a node: decrypted, parent minus the decrypted left sibling (exact ints),
        or none (F's columns are not candidates there)."""
        if node in build.requested:
            return dict(decoded[node])
        if node == 0 or node - 1 not in build.requested:
            return {}
        left = decoded[node - 1]
        return {party: (pg - left[party][0], ph - left[party][1])
                for party, (pg, ph) in build.parent_hist[(node - 1) // 2].items()}

    def _record_split(
        self, build: _Build, node: int, party: str, feature: int, bin_index: int, missing_left: bool
    ) -> None:
        tree = build.structure
        tree.feature[node], tree.bin[node], tree.missing_left[node] = (
            feature,
            bin_index,
            missing_left,
        )
        if party:
            tree.owner[node] = self.owner_index(party)
            return
        tree.owner[node] = 0
        tree.threshold[node] = self.binning.threshold(feature, bin_index)
        rows = self._rows(build, node, False)
        codes = self.binning.codes[rows, feature]
        left = np.where(codes == self.config.bins, missing_left, codes <= bin_index)
        build.node_of[rows] = np.where(left, 2 * node + 1, 2 * node + 2)

    def apply_splits(self, key: StepKey, responses: Mapping[str, bytes]) -> None:
        """Route the rows of F-split nodes by F's bitmasks; move to the next level."""
        self._check(key, "apply_splits")
        if self._applied == key:
            return  # a retry of the step just applied
        build = self._built(key)
        if tuple(sorted(responses)) != tuple(sorted(build.pending)):
            raise ProtocolError(
                f"partitions expected from {sorted(build.pending)}, got {sorted(responses)}"
            )
        for party, data in responses.items():
            nodes = build.pending[party]
            frames = unpack_frames(data)
            count = decode_head(frames[0], SPLIT_RESPONSE, key) if frames else -1
            if count != len(nodes) or len(frames) != 2 + count:
                raise ProtocolError(f"{party} answered {count} splits, {len(nodes)} were asked")
            records = decode_ints(frames[1], count)
            for node, record, blob in zip(nodes, records, frames[2:], strict=True):
                rows = build.split_rows[node]
                product = self.he.decrypt_slots(blob)  # node indicator x F's left indicator
                outside = np.ones(product.size, bool)
                outside[rows] = False
                if product.size != self.n_rows or product.max(initial=0) > 1 or product[
                        outside].any():
                    raise ProtocolError(f"{party}'s partition of node {node} is not 0/1 on it")
                left = product[rows] == 1
                build.node_of[rows] = np.where(left, 2 * node + 1, 2 * node + 2)
                build.structure.record[node] = record
        split = [n for n in build.frontier if build.structure.owner[n] >= 0]
        build.parent_hist = {n: build.node_hist[n] for n in split}
        build.frontier = [c for n in split for c in (2 * n + 1, 2 * n + 2)]
        build.level += 1
        if build.level == self.config.depth:
            build.level = -1  # only end_tree may follow
        self._applied = key

    def end_tree(self, tree: int) -> dict[str, bytes]:
        """Leaf weights from the exact gradients; update the margins; each F's view of the tree."""
        if tree < len(self.trees):  # a retry: the same topologies again
            return {party: self.topology(tree, party) for party in self.feature_parties}
        build = self._build
        if build is None or build.tree != tree or build.level != -1:
            raise ProtocolError(f"tree {tree} is not built to depth {self.config.depth} yet")
        structure = build.structure
        for node in build.frontier:
            structure.owner[node] = LEAF
        leaves = structure.leaves()
        sums_g = np.bincount(build.node_of, build.g, structure.owner.size)
        sums_h = np.bincount(build.node_of, build.h, structure.owner.size)
        structure.value[leaves] = (
            -self.config.learning_rate * sums_g[leaves] / (sums_h[leaves] + self.config.reg_lambda)
        )
        self.margin = self.margin + structure.value[build.node_of]
        self.trees.append(structure)
        self._build = None
        self._steps.clear()
        splits = int(np.sum(structure.owner >= 0))
        self.reports.append(
            TreeReport(
                tree, log_loss(self.labels, self.margin), auc(self.labels, self.margin), splits,
                ks(self.labels, self.margin),
            )
        )
        return {party: self.topology(tree, party) for party in self.feature_parties}

    def topology(self, tree: int, party: str) -> bytes:
        """Node codes for one F: ABSENT, LEAF, OTHER, or that F's own record id."""
        structure = self.trees[tree]
        mine = structure.owner == self.owner_index(party)
        codes = np.where(structure.owner >= 0, OTHER, structure.owner)
        codes = np.where(mine, structure.record, codes)
        return pack_frames([encode_head(TOPOLOGY, tree, 0, codes.size), encode_ints(codes)])


def _pack_party_map(requests: Mapping[str, bytes]) -> bytes:
    names = sorted(requests)
    return pack_frames([n.encode() for n in names] + [requests[n] for n in names])


def _unpack_party_map(data: bytes) -> dict[str, bytes]:
    frames = unpack_frames(data)
    half = len(frames) // 2
    return {frames[i].decode(): frames[half + i] for i in range(half)}

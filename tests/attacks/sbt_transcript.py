"""What a curious party keeps from a SecureBoost run: the feature node's and the bank's transcript.

The run is `models.sbt.local.run_local(capture=True)`: the declared driver and step functions the
network runs. A node's step handler (`node/steps.py`) unseals each part and hands the step function
exactly these bytes, and seals exactly the bytes the step function returns, so a captured payload
is byte for byte what the recipient reads after unsealing. Decoding below uses only what that
party holds: the feature node reads its requests' cleartext frames (node ids and row counts; the
gradients and node indicators are ciphertexts under the bank's key, its answers too), so it
decodes no positions; the bank decrypts the answers with its own secret key and knows its own
gradients and which rows it put in each node.

Runs use the plaintext twin (`PlainTwin.suite_for_testing()`) by default: it builds the same trees
as BFV (`tests/unit/models/test_sbt_protocol.py::test_encrypted_and_twin_build_the_same_trees`),
its request frames have the same cleartext frames, and its "decryption" yields the same exact sums,
since BFV's sums are exact integers mod t. `test_sbt_transcript.py` checks this on a small run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crypto.he import PlainTwin, SbtSuite, unpack_frames
from models.sbt import (
    FeatureAlignment,
    SbtConfig,
    StepKey,
    decode_head,
    decode_ints,
)
from models.sbt.feature import HIST_REQUEST, HIST_RESPONSE, SPLIT_REQUEST, FeatureParty
from models.sbt.label import LabelParty, _Build
from models.sbt.local import LocalRun, run_local
from models.sbt.tree import unpack_sums

DATA = Path("/work/shared/data")
JOB = "sbt-attack"
HOST = "host"


@dataclass
class Credit:
    """A sample of give_credit split vertically: the bank's columns and labels, the host's."""

    bank: np.ndarray
    labels: np.ndarray
    host: np.ndarray


def give_credit(rows: int, seed: int = 0) -> Credit:
    guest = np.loadtxt(DATA / "give_credit_hetero_guest.csv", delimiter=",", skiprows=1)
    host = np.loadtxt(DATA / "give_credit_hetero_host.csv", delimiter=",", skiprows=1)
    assert np.array_equal(guest[:, 0], host[:, 0])
    pick = np.sort(np.random.default_rng(seed).permutation(guest.shape[0])[:rows])
    return Credit(guest[pick, 2:], guest[pick, 1], host[pick, 1:])


@dataclass
class FeatureView:
    """Everything the feature node reads, decoded as it would decode it.

    histogram[t][d][node] = positions of the node's (sampled) rows F can read from the histogram
    request: none (the request carries node ids, row counts and ciphertexts over every row);
    split[t][d][node] = positions of the node's rows F can read from a split request it won:
    none (an encrypted node indicator over every row);
    left[t][d][node] = which of those rows F's answer sends left: none it can read (its answer
    is the encrypted product of that indicator and its own left indicator over every row);
    counts[t][d][node] = the (node, sibling) row counts the request states;
    topology[t] = the node codes of tree t (ABSENT, LEAF, OTHER or F's record id).
    """

    n_rows: int
    histogram: list[list[dict[int, np.ndarray]]] = field(default_factory=list)
    split: list[list[dict[int, np.ndarray]]] = field(default_factory=list)
    left: list[list[dict[int, np.ndarray]]] = field(default_factory=list)
    counts: list[list[dict[int, np.ndarray]]] = field(default_factory=list)
    topology: list[np.ndarray] = field(default_factory=list)


@dataclass
class BankView:
    """What the bank decrypts: per tree, level and requested node, the rows it asked about and
    the exact per-bin sums (G, H) of every F column, shape (columns, slots); and its own
    quantised gradients gq, hq of that tree."""

    sums: list[list[dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]]] = field(
        default_factory=list
    )
    gq: list[np.ndarray] = field(default_factory=list)
    hq: list[np.ndarray] = field(default_factory=list)


@dataclass
class Run:
    label: LabelParty
    feature: FeatureParty
    run: LocalRun
    builds: list[_Build]
    feature_view: FeatureView
    bank_view: BankView

    def host_bins(self) -> np.ndarray:
        """Ground truth for scoring attack 2 only: F's bin code of each row and column."""
        binning = self.feature._binning
        assert binning is not None
        return binning.codes


def train(credit: Credit, config: SbtConfig, suite: SbtSuite | None = None) -> Run:
    suite = suite or PlainTwin.suite_for_testing()
    n = credit.labels.size
    label = LabelParty(JOB, credit.bank, credit.labels, [HOST], config, suite=suite)
    feature = FeatureParty(HOST, JOB, credit.host, FeatureAlignment(n, np.arange(n),
                                                                    np.arange(n)), config,
                           suite=suite)
    builds: list[_Build] = []
    start = label._start

    def keep(tree: int) -> _Build:  # the bank's own state of each tree: its gradients
        builds.append(start(tree))
        return builds[-1]

    label._start = keep  # type: ignore[method-assign]
    run = run_local(label, [feature], capture=True)
    return Run(label, feature, run, builds, feature_view(run, n, config),
               bank_view(run, label, builds, config))


def _levels(config: SbtConfig) -> list[dict[int, np.ndarray]]:
    return [{} for _ in range(config.depth)]


def feature_view(run: LocalRun, n_rows: int, config: SbtConfig) -> FeatureView:
    """Decode the payloads addressed to F (one F here): requests and topologies."""
    view = FeatureView(n_rows)
    none = np.zeros(0, np.int64)  # no cleartext frame holds a position or a left bit
    for kind, data in run.payloads:
        if kind not in ("histogram_request", "split_request", "partitions", "topology"):
            continue
        frames = unpack_frames(data)
        if kind == "partitions":  # F's own answer: ciphertexts of products it cannot read
            tree, level = _tree_level(frames[0])
            while len(view.left) <= tree:
                view.left.append(_levels(config))
            asked = view.split[tree][level]
            assert len(frames) == 2 + len(asked)
            view.left[tree][level].update({node: none for node in asked})
        elif kind in ("histogram_request", "split_request"):
            tag = HIST_REQUEST if kind == "histogram_request" else SPLIT_REQUEST
            tree, level = _tree_level(frames[0])
            count = decode_head(frames[0], tag, StepKey(JOB, tree, level, kind))
            table = view.histogram if kind == "histogram_request" else view.split
            for grown in (table, view.counts):
                while len(grown) <= tree:
                    grown.append(_levels(config))
            if kind == "histogram_request":
                assert len(frames) == 3 + count  # ids, counts, one ciphertext vector per node
                nodes = decode_ints(frames[1], count)
                counts = decode_ints(frames[2], 2 * count).reshape(count, 2)
                view.counts[tree][level].update(zip(nodes.tolist(), counts, strict=True))
            else:
                assert len(frames) == 2 + count  # specs, one encrypted indicator per split
                nodes = decode_ints(frames[1], 4 * count).reshape(count, 4)[:, 0]
            table[tree][level].update({int(node): none for node in nodes})
        elif kind == "topology":
            view.topology.append(decode_ints(frames[1]))
    for table in (view.histogram, view.split, view.left, view.counts):
        while len(table) < len(view.topology):
            table.append(_levels(config))
    return view


def _tree_level(head: bytes) -> tuple[int, int]:
    values = np.frombuffer(head[4:12], dtype="<u4")
    return int(values[0]), int(values[1])


def bank_view(run: LocalRun, label: LabelParty, builds: list[_Build],
              config: SbtConfig) -> BankView:
    """Pair each histogram request L sent with the answer it decrypted; the rows of a node are
    L's own record (its sampled rows whose node at that level was the requested one)."""
    view = BankView(gq=[b.gq.copy() for b in builds], hq=[b.hq.copy() for b in builds])
    asked: list[tuple[int, int, np.ndarray, list[np.ndarray]]] = []
    t = label.he.plain_modulus
    for kind, data in run.payloads:
        if kind not in ("histogram_request", "histograms"):
            continue
        frames = unpack_frames(data)
        if kind == "histogram_request":
            tree, level = _tree_level(frames[0])
            count = decode_head(frames[0], HIST_REQUEST, StepKey(JOB, tree, level, kind))
            nodes = decode_ints(frames[1], count)
            rows = [_own_rows(builds[tree], int(node), level) for node in nodes]
            asked.append((tree, level, nodes, rows))
        elif kind == "histograms":
            tree, level, nodes, rows = asked.pop(0)
            count = decode_head(frames[0], HIST_RESPONSE, StepKey(JOB, tree, level, kind))
            width = int(decode_ints(frames[2], 1)[0])
            while len(view.sums) <= tree:
                view.sums.append([{} for _ in range(config.depth)])
            for i, node in enumerate(nodes[:count]):
                residues = label.he.decrypt_histograms(frames[3 + i], width, config.slots)
                g, h = unpack_sums(residues, builds[tree].shift, t)
                view.sums[tree][level][int(node)] = (rows[i], g, h)
    return view


def _own_rows(build: _Build, node: int, level: int) -> np.ndarray:
    """The sampled rows L placed in `node` (at depth `level`), from where each row ended."""
    ancestor = build.node_of.copy()
    while (deeper := ancestor > 2 ** (level + 1) - 2).any():
        ancestor[deeper] = (ancestor[deeper] - 1) // 2
    return np.flatnonzero((ancestor == node) & build.sampled)

"""Tests for the SecureBoost roles end to end: encrypted vs twin, leaks on the wire, scoring."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from common.errors import ProtocolError
from crypto.he import BFV_SUITE, PlainTwin, SbtSuite, unpack_frames
from fedcredit.bench.vlr import synthetic_vertical
from models.metrics import ks
from models.sbt import FeatureAlignment, SbtConfig, StepKey
from models.sbt.centralized import train_pooled, train_xgboost
from models.sbt.codec import (
    feature_model_bytes,
    label_model_bytes,
    load_feature_model,
    load_label_model,
)
from models.sbt.feature import FeatureParty
from models.sbt.label import LabelParty, _Build
from models.sbt.local import LocalRun, run_local, score_local
from models.sbt.scoring import FeatureScorer, LabelScorer, ScoreRelay

JOB = "sbt-job"
CONFIG = SbtConfig(trees=3, depth=3, bins=8, learning_rate=0.3, min_histogram_rows=16)
DATA = Path("/work/shared/data")


@dataclass
class Dataset:
    label: np.ndarray
    labels: np.ndarray
    tables: dict[str, tuple[np.ndarray, FeatureAlignment]]
    pooled: np.ndarray  # every column in L's row order (NaN where a party lacks the row)


def dataset(rows: int = 600) -> Dataset:
    """L: 3 columns with some NaN; f1: 3 columns of every row; f2: 2 columns of 70% of rows."""
    data = synthetic_vertical(rows, 3, 5, seed=11)
    rng = np.random.default_rng(12)
    label = data.label_features.copy()
    label[rng.random(label.shape) < 0.05] = np.nan
    host = data.host_table[data.alignment.own_rows]  # host columns in L's row order
    keep = np.sort(rng.permutation(rows)[: int(0.7 * rows)])
    own = rng.permutation(keep.size)
    f2 = np.empty((keep.size, 2))
    f2[own] = host[keep, 3:]
    f2[rng.random(f2.shape) < 0.1] = np.nan
    pooled_f2 = np.full((rows, 2), np.nan)
    pooled_f2[keep] = f2[own]
    tables = {
        "f1": (host[:, :3], FeatureAlignment(rows, np.arange(rows), np.arange(rows))),
        "f2": (f2, FeatureAlignment(rows, keep, own)),
    }
    return Dataset(label, data.labels, tables, np.hstack([label, host[:, :3], pooled_f2]))


@dataclass
class Trained:
    label: LabelParty
    parties: list[FeatureParty]
    run: LocalRun
    builds: list[_Build]


def train(
    suite: SbtSuite, data: Dataset, config: SbtConfig = CONFIG, capture: bool = False
) -> Trained:
    label = LabelParty(JOB, data.label, data.labels, sorted(data.tables), config, suite=suite)
    parties = [
        FeatureParty(name, JOB, table, alignment, config, suite=suite)
        for name, (table, alignment) in data.tables.items()
    ]
    builds: list[_Build] = []
    start = label._start

    def spy(tree: int) -> _Build:
        builds.append(start(tree))
        return builds[-1]

    label._start = spy  # type: ignore[method-assign]
    return Trained(label, parties, run_local(label, parties, capture=capture), builds)


@pytest.fixture(scope="module")
def data() -> Dataset:
    return dataset()


@pytest.fixture(scope="module")
def encrypted(data: Dataset) -> Trained:
    return train(BFV_SUITE, data, capture=True)


@pytest.fixture(scope="module")
def twin(data: Dataset) -> Trained:
    return train(PlainTwin.suite_for_testing(), data)


def test_encrypted_and_twin_build_the_same_trees(encrypted: Trained, twin: Trained) -> None:
    assert len(encrypted.label.trees) == CONFIG.trees
    for a, b in zip(encrypted.label.trees, twin.label.trees, strict=True):
        assert a.equal(b)
    assert np.array_equal(encrypted.label.margin, twin.label.margin)
    owners = np.concatenate([t.owner for t in encrypted.label.trees])
    assert {0, 1, 2} <= set(owners.tolist())  # L, f1 and f2 all won splits
    last = encrypted.label.reports[-1]
    assert last.auc > 0.75
    assert last.ks == ks(encrypted.label.labels, encrypted.label.margin) and last.ks > 0.3


def test_federated_model_equals_training_on_pooled_columns(data: Dataset, twin: Trained) -> None:
    pooled = train_pooled(data.pooled, data.labels, CONFIG)
    assert np.allclose(pooled.margin, twin.label.margin, rtol=0, atol=1e-12)
    for a, b in zip(pooled.trees, twin.label.trees, strict=True):
        assert np.array_equal(a.owner >= 0, b.owner >= 0) and np.array_equal(a.value, b.value)


def _walk(blob: bytes) -> Iterator[tuple[bool, bytes]]:
    """(is a SEAL ciphertext, bytes) for every leaf frame of a payload."""
    if blob[:4] == b"FCF1":
        for frame in unpack_frames(blob):
            yield from _walk(frame)
    else:
        yield blob[:3] == b"\x5e\xa1\x10", blob


def _hits(blobs: list[bytes], patterns: np.ndarray) -> int:
    """How many aligned-or-not occurrences of the fixed-width patterns the blobs contain."""
    width, count = patterns.dtype.itemsize, 0
    for blob in blobs:
        for offset in range(width):
            usable = max(0, len(blob) - offset) // width * width
            if not usable:
                continue
            view = np.frombuffer(blob, dtype=patterns.dtype, count=usable // width, offset=offset)
            count += int(np.isin(view, patterns).sum())
    return count


def _encodings(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    finite = np.unique(values[np.isfinite(values) & (values != 0)])
    return finite.astype("<f8").view("<u8"), finite.astype("<f4").view("<u4")


def test_payloads_hold_no_gradient_label_or_threshold(encrypted: Trained) -> None:
    frames = [f for _, blob in encrypted.run.payloads for f in _walk(blob)]
    ciphers = [b for is_ct, b in frames if is_ct]
    clear = [b for is_ct, b in frames if not is_ct]
    assert ciphers and clear and sum(map(len, ciphers)) > 50 * sum(map(len, clear))
    secrets = [b.g[b.sampled] for b in encrypted.builds] + [
        b.h[b.sampled] for b in encrypted.builds
    ]
    thresholds = [np.concatenate(encrypted.label.binning.edges)]
    for party in encrypted.parties:
        assert party._binning is not None
        thresholds.append(np.concatenate(party._binning.edges))
        thresholds.append(np.array([r.threshold for r in party._records]))
    as64, as32 = _encodings(np.concatenate(secrets + thresholds))
    assert _hits(ciphers + clear, as64) == 0  # no float64 anywhere, ciphertexts included
    assert _hits(clear, as32) == 0  # no float32 in any cleartext frame
    packed = np.unique(np.concatenate([b.packed[b.sampled] for b in encrypted.builds]))
    assert _hits(ciphers + clear, packed[packed > 1 << 20].astype("<u8")) == 0
    labels = encrypted.label.labels
    for encoding in (
        labels[:16].astype("<f8").tobytes(),
        np.packbits(labels.astype(bool)).tobytes()[:8],
    ):
        assert not any(encoding in blob for _, blob in encrypted.run.payloads)


def test_the_same_search_finds_the_values_the_twin_sends_in_clear(data: Dataset) -> None:
    plain = train(PlainTwin.suite_for_testing(), data, capture=True)
    blobs = [f for _, blob in plain.run.payloads for _, f in _walk(blob)]
    packed = np.unique(np.concatenate([b.packed[b.sampled] for b in plain.builds]))
    assert _hits(blobs, packed[packed > 1 << 20].astype("<u8")) > 100


def test_the_lookup_table_never_leaves_the_feature_party(encrypted: Trained) -> None:
    label = encrypted.label
    for tree in label.trees:
        party_nodes = tree.owner >= 1
        assert np.all(np.isnan(tree.threshold[party_nodes])) and np.all(
            tree.record[party_nodes] >= 0
        )
    kinds = {kind for kind, _ in encrypted.run.payloads}
    assert kinds == {
        "public_context",
        "histogram_request",
        "histograms",
        "split_request",
        "partitions",
        "topology",
        "report",  # L's per-tree loss and AUC, for the coordinator's job record
        "next_tree",  # each party's first tree to build (resume), for the driver
    }
    records = np.array([r.threshold for p in encrypted.parties for r in p._records])
    as64, as32 = _encodings(records)
    frames = [f for _, blob in encrypted.run.payloads for f in _walk(blob)]
    assert records.size and _hits([b for _, b in frames], as64) == 0
    assert _hits([b for is_ct, b in frames if not is_ct], as32) == 0


def white_box_margins(trained: Trained, data: Dataset) -> np.ndarray:
    """The plaintext model: L's trees with every F's private records filled in, on pooled rows."""
    label, names = trained.label, sorted(data.tables)
    columns = {"f1": data.pooled[:, 3:6], "f2": data.pooled[:, 6:8]}
    margin = np.full(data.labels.size, label.base_margin)
    for tree in label.trees:
        node = np.zeros(data.labels.size, np.int64)
        for _ in range(label.config.depth):
            for n in np.flatnonzero(tree.owner >= 0):
                rows = node == n
                owner = int(tree.owner[n])
                if owner == 0:
                    x, thr, miss = (
                        data.label[rows, tree.feature[n]],
                        tree.threshold[n],
                        tree.missing_left[n],
                    )
                else:
                    party = next(p for p in trained.parties if p.name == names[owner - 1])
                    record = party.record(int(tree.record[n]))
                    x = columns[party.name][rows, record.feature]
                    thr, miss = record.threshold, record.missing_left
                left = np.where(np.isnan(x), miss, x <= thr)
                node[rows] = np.where(left, 2 * n + 1, 2 * n + 2)
        margin = margin + tree.value[node]
    return margin


def test_joint_scoring_equals_the_plaintext_model(encrypted: Trained, data: Dataset) -> None:
    label, parties = encrypted.label, encrypted.parties
    rows = np.random.default_rng(2).permutation(data.labels.size)[:150]
    key = StepKey(JOB, 0, 0, "score")
    scorer = LabelScorer(label)
    request = scorer.request(key, rows, data.label[rows])
    relay = ScoreRelay(label.he.public_bytes())
    parts = {p.name: FeatureScorer(p).score(key, request) for p in parties}
    margins = scorer.finish(key, relay.combine(key, parts))
    assert np.array_equal(margins, white_box_margins(encrypted, data)[rows])
    assert np.allclose(margins, label.margin[rows], rtol=0, atol=1e-12)


def test_scoring_from_saved_parts_over_an_explicit_row_list(
    encrypted: Trained, data: Dataset
) -> None:
    """The network path: saved parts, a fresh BFV key of L's own, rows named by a list that
    each party resolves itself; an id a party lacks takes its splits' missing direction."""
    label, parties = encrypted.label, encrypted.parties
    saved_l = load_label_model(label_model_bytes(
        label.base_margin, label.trees, label.feature_parties, [],
        columns=[f"l{j}" for j in range(data.label.shape[1])]))
    key_l = BFV_SUITE.make_private()
    scorer = LabelScorer(saved_l, key_l)
    unknown, only_f = 7, 11  # nobody knows row 7; only the Fs know row 11
    rows = np.array([30, unknown, 2, only_f, 451, 99])
    own = data.label[rows].copy()
    own[[1, 3]] = np.nan
    key = StepKey(JOB, 5, 0, "score")
    request = scorer.request_rows(key, own)
    parts = {}
    for p in parties:
        model = load_feature_model(feature_model_bytes(
            p.name, p.records(), [p.topology(t) for t in range(p.trees_done)],
            columns=[f"{p.name}{j}" for j in range(p.n_features)]))
        values = p.aligned_values()[rows]
        values[1] = np.nan
        scorer_f = FeatureScorer(model, he=BFV_SUITE.load_public(key_l.public_bytes()))
        parts[p.name] = scorer_f.score(key, request, values)
    margins = scorer.finish(key, ScoreRelay(key_l.public_bytes()).combine(key, parts))
    blind_label, blind_pooled = data.label.copy(), data.pooled.copy()
    blind_label[[unknown, only_f]] = np.nan
    blind_pooled[unknown] = np.nan
    blind_pooled[only_f, :3] = np.nan
    expected = white_box_margins(encrypted, replace(data, label=blind_label, pooled=blind_pooled))
    assert np.array_equal(margins, expected[rows])
    assert np.allclose(margins[[0, 2, 4, 5]], label.margin[rows[[0, 2, 4, 5]]], rtol=0, atol=1e-12)
    with pytest.raises(ProtocolError):  # an explicit-list request needs the party's rows
        scorer_f.score(key, request)


def test_scoring_reveals_only_the_leaf_reached(encrypted: Trained, data: Dataset) -> None:
    label, parties = encrypted.label, encrypted.parties
    rows = np.arange(40)
    key = StepKey(JOB, 1, 0, "score")
    scorer = LabelScorer(label)
    request = scorer.request(key, rows, data.label[rows])
    selectors = scorer._pending[key].selectors
    relay = ScoreRelay(label.he.public_bytes())
    combined = relay.combine(key, {p.name: FeatureScorer(p).score(key, request) for p in parties})
    seen = label.he.decrypt_slots(combined).reshape(selectors.shape)
    assert np.all((seen == 0).sum(axis=2) >= 1)
    allowed_by_l = seen[selectors]
    assert np.sum(allowed_by_l == 0) == rows.size * len(label.trees)  # one zero: the leaf
    assert np.all(seen[~selectors] == 0)  # L's own exclusions stay zero: nothing new there
    nonzero = allowed_by_l[allowed_by_l != 0].astype(np.float64) / label.he.score_modulus
    assert nonzero.size > 50 and 0.3 < nonzero.mean() < 0.7  # uniform noise, not F's bits


def test_twin_scoring_of_every_row_reproduces_the_training_margins(
    twin: Trained, data: Dataset
) -> None:
    rows = np.arange(data.labels.size)
    margins, moved = score_local(twin.label, twin.parties, rows, data.label)
    assert np.allclose(margins, twin.label.margin, rtol=0, atol=1e-12) and moved > 0


def test_first_tree_from_label_columns_only(data: Dataset) -> None:
    trained = train(
        PlainTwin.suite_for_testing(), data,
        CONFIG.model_copy(update=dict(first_tree_label_only=True)),
    )
    first, rest = trained.label.trees[0], trained.label.trees[1:]
    assert np.all(first.owner[first.owner >= 0] == 0)
    assert any(np.any(t.owner >= 1) for t in rest)


@pytest.mark.parametrize(
    "config",
    [CONFIG.model_copy(update=dict(subsample=0.6)),
     CONFIG.model_copy(update=dict(goss=(0.2, 0.3)))],
    ids=["rows", "goss"],
)
def test_row_sampling_trains(data: Dataset, config: SbtConfig) -> None:
    trained = train(PlainTwin.suite_for_testing(), data, config)
    assert trained.label.reports[-1].auc > 0.75
    assert all(b.sampled.sum() < 0.7 * b.sampled.size for b in trained.builds)


def test_steps_are_idempotent_and_checked(data: Dataset) -> None:
    suite = PlainTwin.suite_for_testing()
    label = LabelParty(JOB, data.label, data.labels, ["f1"], CONFIG, suite=suite)
    table, alignment = data.tables["f1"]
    party = FeatureParty("f1", JOB, table, alignment, CONFIG, suite=suite)
    party.open(label.open())
    key = StepKey(JOB, 0, 0, "histograms")
    request = label.histogram_request(key)
    assert request is not None and label.histogram_request(key) == request
    assert party.histograms(key, request) == party.histograms(key, request)
    with pytest.raises(ProtocolError):
        party.histograms(key, request[:-8] + bytes(8))  # a changed request under the same key
    with pytest.raises(ProtocolError):
        party.histograms(StepKey(JOB, 1, 0, "histograms"), request)  # tree 1 before tree 0
    with pytest.raises(ProtocolError):
        label.find_splits(StepKey(JOB, 0, 0, "find_splits"), {})  # f1's sums are missing


def _give_credit() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    guest = np.loadtxt(DATA / "give_credit_hetero_guest.csv", delimiter=",", skiprows=1)
    host = np.loadtxt(DATA / "give_credit_hetero_host.csv", delimiter=",", skiprows=1)
    assert np.array_equal(guest[:, 0], host[:, 0])
    return guest[:, 2:], guest[:, 1], host[:, 1:]


GIVE_CREDIT = SbtConfig(trees=30, depth=3, bins=32, learning_rate=0.3)


def _give_credit_auc(suite: SbtSuite) -> tuple[float, float]:
    x_label, y, x_host = _give_credit()
    rows = y.size
    label = LabelParty(JOB, x_label, y, ["host"], GIVE_CREDIT, suite=suite)
    host = FeatureParty(
        "host",
        JOB,
        x_host,
        FeatureAlignment(rows, np.arange(rows), np.arange(rows)),
        GIVE_CREDIT,
        suite=suite,
    )
    run_local(label, [host])
    _, _, xgb_auc = train_xgboost(np.hstack([x_label, x_host]), y, GIVE_CREDIT)
    return label.reports[-1].auc, xgb_auc


def test_give_credit_twin_lands_within_0005_of_xgboost() -> None:
    """The same job under BFV runs through real node processes in
    tests/integration/test_sbt_network.py::test_give_credit_matches_xgboost (one encrypted
    give_credit run in the suite, not two: it costs ~3 min)."""
    federated, xgb = _give_credit_auc(PlainTwin.suite_for_testing())
    assert abs(federated - xgb) < 0.005 and federated > 0.86


def test_a_job_resumed_after_any_tree_builds_the_same_model(data: Dataset, twin: Trained) -> None:
    """Checkpoints are the roles' state dicts through the node's .npz codec; fresh keys."""
    from common.files import load_state, state_bytes

    suite = PlainTwin.suite_for_testing()
    first = train(suite, data, CONFIG)
    label = LabelParty(JOB, data.label, data.labels, sorted(data.tables), CONFIG, suite=suite)
    parties = [FeatureParty(n, JOB, t, a, CONFIG, suite=suite) for n, (t, a) in data.tables.items()]
    run_local(label, parties, stop_after_tree=0)
    assert label.next_epoch == 1 and all(p.next_epoch == 1 for p in parties)
    resumed = LabelParty(JOB, data.label, data.labels, sorted(data.tables), CONFIG, suite=suite)
    resumed.load_state_dict(load_state(state_bytes(label.state_dict()), "label"))
    again = [FeatureParty(n, JOB, t, a, CONFIG, suite=suite) for n, (t, a) in data.tables.items()]
    for old, new in zip(parties, again, strict=True):
        new.load_state_dict(load_state(state_bytes(old.state_dict()), old.name))
    run = run_local(resumed, again, resume=True)
    assert [r["epoch"] for r in run.reports] == [1, 2]
    assert all(a.equal(b) for a, b in zip(resumed.trees, first.label.trees, strict=True))
    assert np.array_equal(resumed.margin, first.label.margin)
    assert [p.records() for p in again] == [p.records() for p in first.parties]


def test_feature_nodes_refuse_nodes_below_their_floor(data: Dataset) -> None:
    from models.protocol import BelowFloor, Floors
    from models.sbt.algorithm import ALGORITHM

    with pytest.raises(BelowFloor, match="min_histogram_rows"):
        ALGORITHM.apply_floors(CONFIG, Floors())  # 16 < the default floor of 128
    suite = PlainTwin.suite_for_testing()
    small = CONFIG.model_copy(update=dict(min_histogram_rows=10_000))
    table, alignment = data.tables["f1"]
    label = LabelParty(JOB, data.label, data.labels, ["f1"], CONFIG, suite=suite)
    party = FeatureParty("f1", JOB, table, alignment, small, suite=suite)
    party.open(label.open())
    request = label.histogram_request(StepKey(JOB, 0, 0, "histograms"))
    assert request is not None
    with pytest.raises(ProtocolError, match="refuses"):
        party.histograms(StepKey(JOB, 0, 0, "histograms"), request)
    # L at a floor above every node asks F nothing: its own columns still split the trees
    alone = train(suite, data, small)
    assert all(np.all(t.owner[t.owner >= 0] == 0) for t in alone.label.trees)
    assert alone.label.reports[-1].auc > 0.6


def test_feature_node_answers_over_every_row_and_reads_no_position(data: Dataset) -> None:
    """A request holds ids, counts and one encrypted vector over every aligned row per node."""
    suite = PlainTwin.suite_for_testing()
    label = LabelParty(JOB, data.label, data.labels, ["f1"], CONFIG, suite=suite)
    label.open()
    request = label.histogram_request(StepKey(JOB, 0, 0, "histograms"))
    assert request is not None
    frames = unpack_frames(request)
    assert len(frames) == 4  # head, node ids, counts, one vector
    values = np.frombuffer(unpack_frames(frames[3])[1], "<u8")
    assert values.size == data.labels.size  # every row, not the node's

"""The SecureBoost transcripts the attacks read: decoded as each party would, and the same under
BFV as under the plaintext twin the attack tests use for speed."""

from __future__ import annotations

import numpy as np
import pytest

from crypto.he import BFV_SUITE
from models.sbt import SbtConfig
from tests.attacks.sbt_attacks import node_paths
from tests.attacks.sbt_transcript import Run, give_credit, train

SMALL = SbtConfig(trees=2, depth=3, bins=8, min_histogram_rows=48)


@pytest.fixture(scope="module")
def twin() -> Run:
    return train(give_credit(300, seed=3), SMALL)


@pytest.fixture(scope="module")
def encrypted() -> Run:
    return train(give_credit(300, seed=3), SMALL, BFV_SUITE)


def test_feature_node_reads_node_ids_and_counts_but_no_rows(twin: Run) -> None:
    view = twin.feature_view
    asked = [rows for table in (view.histogram, view.split, view.left)
             for tree in table for level in tree for rows in level.values()]
    assert asked and all(rows.size == 0 for rows in asked)
    paths = node_paths(view)  # every row at the same node: no membership to rank by
    assert paths.shape[1] and all(np.unique(paths[:, j]).size == 1 for j in range(paths.shape[1]))
    for tree, build in enumerate(twin.builds):  # the stated counts are the bank's own
        for level, stated in enumerate(view.counts[tree]):
            for node, (rows, sibling) in stated.items():
                assert rows == np.count_nonzero((build.node_of >= 0) & build.sampled & (
                    _at(build.node_of, level) == node))
                assert node == 0 or sibling == np.count_nonzero(
                    build.sampled & (_at(build.node_of, level) == node + 1))


def _at(final: np.ndarray, level: int) -> np.ndarray:
    ancestor = final.copy()
    while (deeper := ancestor > 2 ** (level + 1) - 2).any():
        ancestor[deeper] = (ancestor[deeper] - 1) // 2
    return ancestor


def test_bank_decrypts_the_exact_bin_sums_of_its_gradients(twin: Run) -> None:
    codes = twin.host_bins()
    for tree, levels in enumerate(twin.bank_view.sums):
        gq = twin.bank_view.gq[tree]
        for nodes in levels:
            for rows, g_bins, _ in nodes.values():
                for column in range(codes.shape[1]):
                    expected = np.bincount(codes[rows, column], gq[rows], SMALL.slots)
                    assert np.array_equal(g_bins[column], expected.astype(np.int64))


def test_bfv_and_twin_transcripts_carry_the_same_frames_and_sums(
        twin: Run, encrypted: Run) -> None:
    a, b = twin.feature_view, encrypted.feature_view
    assert any(level for tree in a.split for level in tree)  # F won splits: not a vacuous check
    for table in ("histogram", "split", "left", "counts"):
        for tree_a, tree_b in zip(getattr(a, table), getattr(b, table), strict=True):
            for level_a, level_b in zip(tree_a, tree_b, strict=True):
                assert level_a.keys() == level_b.keys()
                assert all(np.array_equal(level_a[n], level_b[n]) for n in level_a)
    for tree_a, tree_b in zip(twin.bank_view.sums, encrypted.bank_view.sums, strict=True):
        for level_a, level_b in zip(tree_a, tree_b, strict=True):
            assert level_a.keys() == level_b.keys()
            for node, (rows, g, h) in level_a.items():
                rows_b, g_b, h_b = level_b[node]
                assert np.array_equal(rows, rows_b)
                assert np.array_equal(g, g_b) and np.array_equal(h, h_b)

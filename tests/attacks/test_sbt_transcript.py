"""The SecureBoost transcripts the attacks read: decoded as each party would, and the same under
BFV as under the plaintext twin the attack tests use for speed."""

from __future__ import annotations

import numpy as np
import pytest

from crypto.he import BFV_SUITE
from models.sbt import SbtConfig
from tests.attacks.sbt_attacks import node_paths
from tests.attacks.sbt_transcript import Run, give_credit, train

SMALL = SbtConfig(trees=2, depth=3, bins=8)


@pytest.fixture(scope="module")
def twin() -> Run:
    return train(give_credit(300, seed=3), SMALL)


@pytest.fixture(scope="module")
def encrypted() -> Run:
    return train(give_credit(300, seed=3), SMALL, BFV_SUITE)


def test_feature_node_rebuilds_every_rows_node_from_its_requests(twin: Run) -> None:
    paths = node_paths(twin.feature_view)
    for tree, build in enumerate(twin.builds):
        final = build.node_of  # the bank's own record of where each row ended
        known = paths[:, tree * SMALL.depth + SMALL.depth - 1]
        ancestor = final.copy()
        while (deeper := ancestor > known).any():
            ancestor[deeper] = (ancestor[deeper] - 1) // 2
        assert np.array_equal(ancestor, known)


def test_bank_decrypts_the_exact_bin_sums_of_its_gradients(twin: Run) -> None:
    codes = twin.host_bins()
    for tree, levels in enumerate(twin.bank_view.sums):
        gq = twin.bank_view.gq[tree]
        for nodes in levels:
            for rows, g_bins, _ in nodes.values():
                for column in range(codes.shape[1]):
                    expected = np.bincount(codes[rows, column], gq[rows], SMALL.slots)
                    assert np.array_equal(g_bins[column], expected.astype(np.int64))


def test_bfv_and_twin_transcripts_carry_the_same_positions_and_sums(
        twin: Run, encrypted: Run) -> None:
    a, b = twin.feature_view, encrypted.feature_view
    assert any(level for tree in a.split for level in tree)  # F won splits: not a vacuous check
    for table in ("histogram", "split", "left"):
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

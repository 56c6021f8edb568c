"""Attack 2 of issue 12: the bank solves exact bin sums of its own gradients for F's bins.

DESIGN §5: the bank may learn per-bin g/h sums at nodes of at least F's floor, never F's values.
A curious bank asks for deep trees of tiny nodes (`min_child_weight` 0) and solves the subset sums;
F answers only nodes of at least `min_histogram_rows` (default 128, the floor tests/attacks/SBT.md
measured: 68 pairs beyond chance at 32, 0-3 at 128), and L gets derived sums only for nodes whose
sibling also reaches it.
"Chance" is what a guesser who knows each node's bin counts gets right on the same pairs (the
modal bin); a claim only counts beyond that.
"""

from __future__ import annotations

import pytest

from models.protocol import Floors
from models.sbt import SbtConfig
from tests.attacks.sbt_attacks import NodeResult, Solved, solve_bins
from tests.attacks.sbt_transcript import give_credit, train

ROWS = 1000
CURIOUS_JOB = SbtConfig(trees=3, depth=6, min_child_weight=0.0)  # tiny nodes asked for
DEFAULT_FLOOR = Floors().min_histogram_rows  # nodes' [floors] min_histogram_rows


@pytest.fixture(scope="module")
def results() -> list[NodeResult]:
    run = train(give_credit(ROWS), CURIOUS_JOB)
    return solve_bins(run.bank_view, run.host_bins())


def test_bin_sums_cannot_be_solved_for_rows_at_the_default_floor(
        results: list[NodeResult]) -> None:
    solved = Solved.of(results, DEFAULT_FLOOR)
    assert results and solved.pairs  # the bank did get sums to attack
    assert solved.correct <= solved.chance + 2

"""Attack 2 of issue 12: the bank solves exact bin sums of its own gradients for F's bins.

DESIGN §5: the bank may learn per-bin g/h sums at nodes of at least F's floor, never F's values.
Today F answers nodes of any size and `min_child_weight` comes from the job, so a curious bank asks
for deep trees of tiny nodes and solves the subset sums; the promise test is xfail(strict) until
the rewrite, and `..._succeeds_on_the_old_protocol` (deleted with it) proves the harness.
"Chance" is what a guesser who knows each node's bin counts gets right on the same pairs (the
modal bin); a claim only counts beyond that.
"""

from __future__ import annotations

import pytest

from models.sbt import SbtConfig
from tests.attacks.sbt_attacks import NodeResult, Solved, solve_bins
from tests.attacks.sbt_transcript import give_credit, train

ROWS = 1000
CURIOUS_JOB = SbtConfig(trees=3, depth=6, min_child_weight=0.0)  # tiny nodes, allowed today
DEFAULT_FLOOR = 32  # nodes' [floors] min_histogram_rows


@pytest.fixture(scope="module")
def results() -> list[NodeResult]:
    run = train(give_credit(ROWS), CURIOUS_JOB)
    return solve_bins(run.bank_view, run.host_bins())


@pytest.mark.xfail(strict=True, reason="issue 12: today F answers nodes of any size with exact "
                   "bin sums the bank can solve for rows")
def test_bin_sums_cannot_be_solved_for_rows_at_the_default_floor(
        results: list[NodeResult]) -> None:
    solved = Solved.of(results, DEFAULT_FLOOR)
    assert solved.correct <= solved.chance + 2


# Deleted with the rewrite: it proves the attack works where the protocol leaks.


def test_bin_sum_solving_succeeds_on_the_old_protocol(results: list[NodeResult]) -> None:
    every = Solved.of(results, 1)
    assert every.correct == every.recovered  # every claim is certain, and right
    assert every.correct >= every.chance + 200
    at_floor = Solved.of(results, DEFAULT_FLOOR)  # a floor alone still leaves sparse bins
    assert at_floor.correct == at_floor.recovered and at_floor.correct >= at_floor.chance + 30

"""Attack 1 of issue 12: a curious feature node ranks rows by label from SecureBoost traffic.

DESIGN §5: a feature node never learns labels, anything computed from labels, or the node
membership of rows. Today's protocol sends each node's row positions in the clear (and, with
GOSS, the rows sampled by gradient size), so the attacks below work; the promise tests are marked
xfail(strict) until the rewrite. The `..._succeeds_on_the_old_protocol` tests prove the harness
and are deleted with the rewrite.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.sbt import SbtConfig
from tests.attacks.sbt_attacks import (
    known_label_auc,
    mark,
    membership_inputs,
    own_inputs,
    sampled_every_tree,
)
from tests.attacks.sbt_transcript import Credit, Run, give_credit, train

ROWS = 3000
KNOWN = 200  # labels F knows from elsewhere (e.g. its own customers' public defaults)
GOSS = SbtConfig(trees=10, depth=3, goss=(0.2, 0.1))  # LightGBM's default rates
PLAIN = SbtConfig(trees=30, depth=3)  # the job defaults: no sampling


@pytest.fixture(scope="module")
def credit() -> Credit:
    return give_credit(ROWS)


@pytest.fixture(scope="module")
def goss_run(credit: Credit) -> Run:
    return train(credit, GOSS)


@pytest.fixture(scope="module")
def plain_run(credit: Credit) -> Run:
    return train(credit, PLAIN)


@pytest.fixture(scope="module")
def aucs(credit: Credit, plain_run: Run) -> tuple[float, float]:
    own = known_label_auc(own_inputs(credit.host), credit.labels, KNOWN)
    membership = known_label_auc(membership_inputs(plain_run.feature_view, credit.host),
                                 credit.labels, KNOWN)
    return own, membership


@pytest.mark.xfail(strict=True, reason="issue 12: today's protocol sends the rows GOSS sampled")
def test_goss_sampling_does_not_mark_defaulters(credit: Credit, goss_run: Run) -> None:
    marking = mark(credit.labels, sampled_every_tree(goss_run.feature_view) == 1.0)
    assert marking.precision <= marking.base_rate + 0.02


@pytest.mark.xfail(strict=True, reason="issue 12: today's protocol sends node row positions")
def test_node_membership_ranks_rows_no_better_than_own_columns(
        aucs: tuple[float, float]) -> None:
    own, membership = aucs
    assert membership <= own + 0.02


# Deleted with the rewrite: they prove the attacks work where the protocol leaks.


def test_goss_marking_succeeds_on_the_old_protocol(credit: Credit, goss_run: Run) -> None:
    view = goss_run.feature_view
    root = np.zeros(ROWS, bool)
    root[view.histogram[0][0][0]] = True
    first = mark(credit.labels, root)  # one tree: every defaulter, at 3x the base rate
    assert first.recall == 1.0 and first.precision >= 3 * first.base_rate
    always = mark(credit.labels, sampled_every_tree(view) == 1.0)  # ten trees
    assert always.precision >= 0.75 and always.recall >= 0.95  # base rate 0.069


def test_node_membership_ranking_succeeds_on_the_old_protocol(
        aucs: tuple[float, float]) -> None:
    own, membership = aucs
    assert own < 0.76 and membership >= 0.79 and membership >= own + 0.04

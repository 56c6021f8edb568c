"""Attack 1 of issue 12: a curious feature node ranks rows by label from SecureBoost traffic.

DESIGN §5: a feature node never learns labels, anything computed from labels, or the node
membership of rows. Before issue 12 the protocol sent each node's row positions in the clear (and,
with GOSS, the rows sampled by gradient size): marking the rows sampled at every root reached
precision 0.81 (base rate 0.069), and node membership raised a known-label model's AUC from 0.748
to 0.803 (tests/attacks/SBT.md). Now F sums node-masked ciphertexts over every row and reads no
position, so both attacks fall back to F's own columns.
"""

from __future__ import annotations

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


def test_goss_sampling_does_not_mark_defaulters(credit: Credit, goss_run: Run) -> None:
    marking = mark(credit.labels, sampled_every_tree(goss_run.feature_view) == 1.0)
    assert marking.precision <= marking.base_rate + 0.02


def test_node_membership_ranks_rows_no_better_than_own_columns(
        aucs: tuple[float, float]) -> None:
    own, membership = aucs
    assert membership <= own + 0.02

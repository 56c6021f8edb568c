"""Attack 1 (issue 11): a feature node solves its plaintext batch gradients for the bank's labels.

DESIGN §0: a feature node must never recover the bank's labels from anything it sees in training.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.attacks.vlr_attacks import labels_from_gradients, score_labels
from tests.attacks.vlr_transcript import NARROW, WIDE, JobTranscript

LEAK = "issue 11: today's protocol gives every feature node its plaintext batch gradient X^T d"


@pytest.mark.xfail(strict=True, reason=LEAK)
def test_a_wide_feature_node_learns_no_label(vlr_jobs: dict[str, JobTranscript]) -> None:
    job = vlr_jobs["wide"]
    accuracy, majority = score_labels(labels_from_gradients(job.feature), job.truth.labels)
    assert accuracy <= majority + 0.01


@pytest.mark.xfail(strict=True, reason=LEAK)
def test_a_narrow_feature_node_learns_no_label(vlr_jobs: dict[str, JobTranscript]) -> None:
    job = vlr_jobs["narrow"]
    accuracy, majority = score_labels(labels_from_gradients(job.feature), job.truth.labels)
    assert accuracy <= majority + 0.01


# Deleted with the rewrite of issue 11: they prove the harness finds today's leak.


def test_wide_label_attack_succeeds_on_the_old_protocol(
        vlr_jobs: dict[str, JobTranscript]) -> None:
    job = vlr_jobs["wide"]
    first = job.feature.batches[0]
    assert job.feature.design.shape[1] == WIDE and first.positions.size <= WIDE
    assert (first.epoch, first.batch) == (0, 0) and not np.any(first.weights)  # d = ½ − y
    accuracy, _ = score_labels(labels_from_gradients(job.feature, first_only=True),
                               job.truth.labels)
    assert accuracy == 1.0  # least squares on the first batch: measured 1.000 (240 rows)
    accuracy, majority = score_labels(labels_from_gradients(job.feature), job.truth.labels)
    assert accuracy >= 0.99 > majority + 0.2  # every batch of both epochs: measured 1.000 vs 0.671


def test_narrow_label_attack_succeeds_on_the_old_protocol(
        vlr_jobs: dict[str, JobTranscript]) -> None:
    job = vlr_jobs["narrow"]
    assert job.feature.design.shape[1] == NARROW
    accuracy, majority = score_labels(labels_from_gradients(job.feature), job.truth.labels)
    # Bounded least squares per batch, rounded: measured 0.694 vs a 0.671 majority over 84
    # batches of ~69 rows. The arbiter's rounding to 1e-3 keeps exact 0/1 recovery out of reach
    # here (README: a subset-sum at the edge of uniqueness); the leak is real but small.
    assert accuracy >= majority + 0.015

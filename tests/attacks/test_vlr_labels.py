"""Attack 1 (issue 11): a feature node solves everything it holds for the bank's labels.

DESIGN §0: a feature node must never recover the bank's labels from anything it sees in training.
It now holds no plaintext gradient: positions, ciphertexts under the arbiter's key (it has no key
for them), its own masks, one `improved` bit per epoch and, at the end, its own final weights
(permitted output, DESIGN §5). Least squares, bounded least squares and an LP over 0/1 labels run
on all of it; the bar is the majority class, and for the final weights what a party holding only
them can do (README: a wide node's final weights give its labels away by themselves).
"""

from __future__ import annotations

import pytest

from crypto.he.lr_arbiter import own_key
from models.vlr import LR_PARAMS
from tests.attacks.vlr_attacks import (
    labels_from_ciphertexts,
    labels_from_final_weights,
    labels_from_training,
    score_labels,
)
from tests.attacks.vlr_transcript import EPOCHS, WIDE, JobTranscript

JOBS = sorted(EPOCHS)


@pytest.fixture(scope="module")
def reader() -> object:
    """A context on the job's ring without the arbiter's key: how F can parse what it holds."""
    return own_key(LR_PARAMS)


def _everything(job: JobTranscript, reader: object) -> dict[str, tuple[float, float]]:
    """Every attack on everything F holds, scored on the labels: (accuracy, majority)."""
    labels, view = job.truth.labels, job.feature
    found = {"ciphertexts, per batch": score_labels(labels_from_ciphertexts(view, reader), labels),
             "final weights alone": score_labels(labels_from_final_weights(
                 view.design, view.train, view.final_weights), labels)}
    for name, guess in labels_from_training(view, job.learning_rate).items():
        found[name] = score_labels(guess, labels)
    # What its final weights, the job's settings and the positions permit (no `improved` bit):
    # the same equations for every epoch the weights could be from, the best of them.
    permitted = [score_labels(guess, labels) for e in range(len(view.improved))
                 for guess in labels_from_training(view, job.learning_rate, best=e).values()]
    found["permitted: final weights + settings, best epoch"] = max(permitted)
    return found


@pytest.fixture(scope="module")
def attacks(vlr_jobs: dict[str, JobTranscript],
            reader: object) -> dict[str, dict[str, tuple[float, float]]]:
    return {name: _everything(job, reader) for name, job in vlr_jobs.items()}


@pytest.mark.parametrize("name", JOBS)
def test_a_feature_node_reads_no_label_off_its_ciphertexts(
        vlr_jobs: dict[str, JobTranscript], reader: object,
        attacks: dict[str, dict[str, tuple[float, float]]], name: str) -> None:
    """Every batch of every epoch: the residual [d] it kept, read without the key and solved as
    the old protocol's plaintext gradient was, is no better than the majority class."""
    job = vlr_jobs[name]
    view = job.feature
    assert len(view.batches) == EPOCHS[name] * len({b.batch for b in view.batches})
    assert all(reader.scales(b.residual) == [2.0**60] for b in view.batches)  # type: ignore[attr-defined]
    accuracy, majority = attacks[name]["ciphertexts, per batch"]
    assert accuracy <= majority + 0.01  # measured 0.508 / 0.503 vs 0.683: a coin


@pytest.mark.parametrize("name", JOBS)
def test_the_transcript_adds_nothing_to_the_final_weights(
        attacks: dict[str, dict[str, tuple[float, float]]], name: str) -> None:
    """The `improved` bits and every ciphertext on top of the final weights, the positions and
    the job's settings: no better than those alone, over every epoch the weights could be from
    (or the majority class, if better)."""
    found = attacks[name]
    baseline = max(found["final weights alone"], found[
        "permitted: final weights + settings, best epoch"])[0]
    majority = found["final weights alone"][1]
    best = max(accuracy for accuracy, _ in found.values())
    assert best <= max(baseline, majority) + 0.01, found


@pytest.mark.xfail(strict=True, reason="the final weights alone give a 300-column node every label "
                   "of 480 training rows (max-scale LP, README): DESIGN §5 permits them")
def test_a_wide_feature_node_learns_no_label(
        vlr_jobs: dict[str, JobTranscript],
        attacks: dict[str, dict[str, tuple[float, float]]]) -> None:
    """Issue 11's bar on everything, final weights included (300 columns, batch 256)."""
    assert vlr_jobs["wide"].feature.design.shape[1] == WIDE
    found = attacks["wide"]
    majority = found["final weights alone"][1]
    assert max(accuracy for accuracy, _ in found.values()) <= majority + 0.01, found


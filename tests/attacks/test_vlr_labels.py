"""Attack 1 (issue 11): a feature node solves everything it holds for the bank's labels.

DESIGN §0: a feature node must never recover the bank's labels from anything it sees in training.
It holds no plaintext gradient: positions, ciphertexts under the arbiter's key (it has no key for
them), its own masks, the count of epochs it ended and, at the end, its own final weights with the
epoch they are from (permitted output, DESIGN §5: no verdict per epoch before). Least squares,
bounded least squares and an LP over 0/1 labels run on all of it.

Issue 11's bar, the majority class + 0.01, is asserted on what the protocol adds (the ciphertexts).
On everything F holds the baseline is the best attack on its permitted output: a final model is
meant to predict the labels, and the narrow node's 5 columns do (README: its final weights give
it what its columns are worth, ~+0.09 over the majority class here). The wide node's 300 columns
are noise, so what its final weights give is its labels read off its own overfit: the bank's
floor of `min_rows_per_column` training rows per weight bounds that, and the wide job sits at it
(30 per weight; at 10 issue 11's bar was not met, README), where the literal bar holds.
"""

from __future__ import annotations

import pytest

from crypto.he.lr_arbiter import own_key
from models.vlr import LR_PARAMS
from tests.attacks.vlr_attacks import (
    labels_from_ciphertexts,
    labels_from_final_weights,
    labels_from_training,
    score_ceiling,
    score_labels,
)
from tests.attacks.vlr_transcript import EPOCHS, WIDE, JobTranscript

# The shared capture (~1.5 min quiet) and the attacks on 9,000 unknowns (~1 min: two LPs of ~10 s
# each, bounded least squares ~40 s) land on whichever test runs first; on a loaded 2-core
# machine that can pass the suite's 600 s guard.
pytestmark = pytest.mark.timeout(1200)

JOBS = sorted(EPOCHS)
CIPHERTEXTS = "ciphertexts, per batch"
PERMITTED = "permitted: "  # the attacks on the final weights, the epoch they are from, settings


@pytest.fixture(scope="module")
def reader() -> object:
    """A context on the job's ring without the arbiter's key: how F can parse what it holds."""
    return own_key(LR_PARAMS)


def _everything(job: JobTranscript, reader: object) -> dict[str, tuple[float, float]]:
    """Every attack on everything F holds, scored on the labels: (accuracy, majority)."""
    labels, view = job.truth.labels, job.feature
    found = {CIPHERTEXTS: score_labels(labels_from_ciphertexts(view, reader), labels),
             f"{PERMITTED}final weights alone": score_labels(labels_from_final_weights(
                 view.design, view.train, view.final_weights), labels)}
    for name, guess in labels_from_training(view, job.learning_rate).items():
        found[f"{PERMITTED}{name}, best epoch"] = score_labels(guess, labels)
    return found


@pytest.fixture(scope="module")
def attacks(vlr_jobs: dict[str, JobTranscript],
            reader: object) -> dict[str, dict[str, tuple[float, float]]]:
    found = {name: _everything(job, reader) for name, job in vlr_jobs.items()}
    for name, figures in found.items():  # shown with `pytest -s`: the README's table
        for attack, (accuracy, majority) in figures.items():
            print(f"{name:6} {attack:60} accuracy {accuracy:.4f} majority {majority:.4f}")
    return found


@pytest.mark.parametrize("name", JOBS)
def test_a_feature_node_reads_no_label_off_its_ciphertexts(
        vlr_jobs: dict[str, JobTranscript], reader: object,
        attacks: dict[str, dict[str, tuple[float, float]]], name: str) -> None:
    """Every batch of every epoch: the residual [d] it kept, read without the key and solved as
    the old protocol's plaintext gradient was, is no better than the majority class."""
    job = vlr_jobs[name]
    view = job.feature
    assert len(view.batches) == EPOCHS[name] * len({b.batch for b in view.batches})
    assert view.epochs == EPOCHS[name] and 0 <= view.best_epoch < view.epochs
    if name == "wide":  # issue 11's shape, at the bank's floor of 30 training rows per weight
        assert view.design.shape[1] == WIDE and view.train.size == 30 * WIDE
    assert all(reader.scales(b.residual) == [2.0**60] for b in view.batches)  # type: ignore[attr-defined]
    accuracy, majority = attacks[name][CIPHERTEXTS]
    assert accuracy <= majority + 0.01  # measured 0.51 / 0.50 vs 0.68 / 0.66: a coin


def _permitted(found: dict[str, tuple[float, float]]) -> float:
    return max(accuracy for key, (accuracy, _) in found.items() if key.startswith(PERMITTED))


@pytest.mark.parametrize("name", JOBS)
def test_a_feature_node_learns_no_label_beyond_its_final_model(
        attacks: dict[str, dict[str, tuple[float, float]]], name: str) -> None:
    """Issue 11's bar against the permitted output: everything F holds (the ciphertexts, the
    epochs it ended) on top of its final weights, the epoch they are from, the positions and the
    job's settings is no better than the attacks on those alone (or the majority class)."""
    found = attacks[name]
    majority = found[CIPHERTEXTS][1]
    best = max(accuracy for accuracy, _ in found.values())
    assert best <= max(_permitted(found), majority) + 0.01, found


@pytest.mark.parametrize("name", JOBS)
def test_the_final_weights_give_no_more_than_the_final_score_ranks(
        vlr_jobs: dict[str, JobTranscript],
        attacks: dict[str, dict[str, tuple[float, float]]], name: str) -> None:
    """What the permitted output is worth: the attacks on it do no better than the best
    threshold on F's own final score over the training rows (chosen with the labels: a ceiling,
    not an attack). The narrow node's score predicts as well on the validation rows (a model);
    the wide node's does not (an overfit: its training labels, what the floor bounds)."""
    job = vlr_jobs[name]
    view, labels = job.feature, job.truth.labels
    train = score_ceiling(view.design, view.train, view.final_weights, labels)
    held_out = score_ceiling(view.design, view.validation, view.final_weights, labels)
    found = attacks[name]
    assert _permitted(found) <= train + 0.01, (train, found)
    majority = found[CIPHERTEXTS][1]  # over the training rows
    share = labels[view.validation].mean()
    figures = (train, majority, held_out, max(share, 1.0 - share))
    if name == "wide":  # noise columns: its score ranks no row it never trained on
        assert held_out <= figures[3] + 0.01, figures


def test_a_wide_feature_node_learns_no_label(
        attacks: dict[str, dict[str, tuple[float, float]]]) -> None:
    """Issue 11's literal bar on everything the wide node holds, final weights included (300
    columns of noise, batch 256, 30 training rows per weight: the bank's default floor)."""
    found = attacks["wide"]
    majority = found[CIPHERTEXTS][1]
    assert max(accuracy for accuracy, _ in found.values()) <= majority + 0.01, found

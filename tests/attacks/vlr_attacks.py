"""The best attacks we know on a vertical-LR transcript, one function per curious party.

Each takes what the party holds (tests/attacks/vlr_transcript.py) and returns its guess; scoring
against the truth is the tests' job. Plain numpy/scipy, no protocol code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.optimize import lsq_linear

from tests.attacks.vlr_transcript import FeatureView, GradientView


@dataclass(frozen=True)
class LabelGuess:
    positions: np.ndarray  # training positions, one per guess (a row may repeat across batches)
    labels: np.ndarray  # 0/1


def _batch_guess(design: np.ndarray, view: GradientView) -> np.ndarray:
    """Labels of one batch from g = X_B^T d, d = ½ − y + ¼u_F + ¼u_L, with u_L unknown (0 in the
    job's first batch, where every weight is still 0, so there d = ½ − y exactly).

    Least squares for d when the batch has no more rows than the node has columns; otherwise the
    bounded least squares over y ∈ [0, 1]^b (the LP relaxation's closest point), rounded.
    """
    x = design[view.positions]
    shift = 0.5 + 0.25 * (x @ view.weights)  # what F knows of d + y
    rows, cols = x.shape
    if cols >= rows:
        d = np.linalg.lstsq(x.T, view.gradient, rcond=None)[0]
        out: np.ndarray = (shift - d > 0.5).astype(np.int64)
        return out
    target = x.T @ shift - view.gradient  # = X_B^T y (+ ¼ X_B^T u_L)
    fit = lsq_linear(x.T, target, bounds=(0.0, 1.0), method="bvls")
    rounded: np.ndarray = (np.asarray(fit.x) > 0.5).astype(np.int64)
    return rounded


def labels_from_gradients(view: FeatureView, *, first_only: bool = False) -> LabelGuess:
    """A feature node's guess of the bank's labels from its own plaintext gradients."""
    batches = view.batches[:1] if first_only else view.batches
    return LabelGuess(np.concatenate([b.positions for b in batches]),
                      np.concatenate([_batch_guess(view.design, b) for b in batches]))


def score_labels(guess: LabelGuess, labels: np.ndarray) -> tuple[float, float]:
    """(accuracy, majority-class baseline) over the guessed rows."""
    truth = labels[guess.positions]
    share = float(truth.mean())
    return float((guess.labels == truth).mean()), max(share, 1.0 - share)


def host_columns_r2(sums: np.ndarray, host: np.ndarray, known: np.ndarray) -> np.ndarray:
    """The bank's rebuild of a feature node's columns from its decrypted validation sums.

    `sums` is (epochs, rows): Σ_F u_F per validation row each epoch; `host` (rows, columns) the
    node's true values; the bank knows the rows `known`. Regress each column on [1, sums] over the
    known rows, predict the others; R² per column on the rows the bank did not know.
    """
    design = np.column_stack([np.ones(sums.shape[1]), sums.T])
    unknown = np.setdiff1d(np.arange(host.shape[0]), known)
    coef = np.linalg.lstsq(design[known], host[known], rcond=None)[0]
    residual = host[unknown] - design[unknown] @ coef
    spread = host[unknown] - host[unknown].mean(axis=0)
    out: np.ndarray = 1.0 - (residual**2).sum(axis=0) / (spread**2).sum(axis=0)
    return out


@dataclass(frozen=True)
class MaskStats:
    ks_statistic: float
    ks_pvalue: float
    correlation: float  # of (value − mean) with the true gradient
    distance: float  # statistical distance of the worst value from the mask alone: |g|max / 2B
    hiding_bits: float  # −log2(distance)


def arbiter_mask_stats(answers: np.ndarray, gradients: np.ndarray, bound: float) -> MaskStats:
    """What the arbiter's decryptions g + r say about g, with r uniform in [−bound, bound)."""
    ks = stats.kstest(answers / bound, stats.uniform(loc=-1.0, scale=2.0).cdf)
    corr = float(np.corrcoef(answers - answers.mean(), gradients)[0, 1])
    distance = float(np.abs(gradients).max() / (2.0 * bound))
    bits = -float(np.log2(distance))
    return MaskStats(float(ks.statistic), float(ks.pvalue), corr, distance, bits)

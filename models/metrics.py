"""Binary-classification metrics on scores, for every algorithm: log loss, AUC, KS."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt


def _class_counts(y: np.ndarray) -> tuple[int, int]:
    positives = int(np.count_nonzero(y))
    return positives, int(y.size) - positives


def log_loss(y: np.ndarray, logits: np.ndarray) -> float:
    """Mean logistic loss of labels y in {0,1} for logits z (numerically stable)."""
    y, z = np.asarray(y, dtype=np.float64), np.asarray(logits, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def taylor_loss_terms(y: np.ndarray, logits: np.ndarray) -> float:
    """Sum of u^2 - 4 z u (z = 2y - 1): what label-private LR computes under encryption."""
    y, u = np.asarray(y, dtype=np.float64), np.asarray(logits, dtype=np.float64)
    return float(np.sum(u * u - 4.0 * (2.0 * y - 1.0) * u))


def taylor_loss(terms: float, n: int) -> float:
    """Second-order Taylor logistic loss log 2 - z u / 2 + u^2 / 8, averaged over n rows, from
    the sum of `taylor_loss_terms`: the validation loss label-private LR stops early on."""
    return math.log(2.0) + terms / (8.0 * n)


def auc(y: npt.ArrayLike, score: npt.ArrayLike, *, undefined: float = math.nan) -> float:
    """Area under the ROC curve: Mann-Whitney U from average ranks (ties count one half).

    With one class only the AUC is undefined: ``undefined`` is returned (NaN unless asked).
    """
    positive = np.asarray(y) != 0
    positives, negatives = _class_counts(positive)
    if positives == 0 or negatives == 0:
        return undefined
    _, inverse, counts = np.unique(np.asarray(score), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average_rank = ends - (counts - 1) / 2.0
    rank_sum = float(average_rank[inverse][positive].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def ks(y: np.ndarray, score: np.ndarray) -> float:
    """Largest gap between the positives' and negatives' score distributions (ties grouped)."""
    y = np.asarray(y) != 0
    positives, negatives = _class_counts(y)
    if positives == 0 or negatives == 0:
        return float("nan")
    _, inverse = np.unique(np.asarray(score), return_inverse=True)
    pos_at = np.bincount(inverse, weights=y.astype(np.float64))
    neg_at = np.bincount(inverse, weights=(~y).astype(np.float64))
    gap = np.cumsum(pos_at) / positives - np.cumsum(neg_at) / negatives
    return float(np.max(np.abs(gap)))

"""The plaintext twin of horizontal training: the same SGD on every bank's rows pooled in one place.

Only for the comparison in benchmarks, the demo report and tests: it needs every bank's raw rows.
Each bank's rows are split by the same seeded draw as the ClientApp uses; the pooled training rows
are standardised together; the model trains for rounds x local epochs over the pool; AUC is
reported as the federation reports it (per-bank held-out AUC weighted by rows) and pooled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.hfl.model import (
    FloatArray,
    HyperParams,
    Weights,
    holdout_mask,
    init_weights,
    predict_proba,
    standardise,
    train_epochs,
)
from models.metrics import auc


@dataclass(frozen=True)
class CentralResult:
    """The pooled model and its AUC on the banks' held-out rows."""

    weights: Weights
    auc: float
    auc_pooled: float


def train_centralized(
    banks: Sequence[tuple[FloatArray, npt.ArrayLike]],
    hp: HyperParams,
    *,
    rounds: int,
    holdout: float = 0.2,
    seed: int = 0,
) -> CentralResult:
    """Train on the pooled training rows of ``banks`` ((X, y) each); evaluate as the banks do."""
    trains, tests = [], []
    for X, y in banks:
        labels = np.asarray(y, dtype=np.float64)
        test = holdout_mask(len(labels), holdout, seed)
        trains.append((X[~test], labels[~test]))
        tests.append((X[test], labels[test]))
    X_train = np.vstack([x for x, _ in trains])
    y_train = np.concatenate([y for _, y in trains])
    X_test_all = np.vstack([x for x, _ in tests])
    X_train_z, X_test_z = standardise(X_train, X_test_all)
    weights = init_weights(X_train.shape[1])
    for r in range(1, rounds + 1):
        weights = train_epochs(weights, X_train_z, y_train, hp, seed=seed * 100_003 + r)
    scores = predict_proba(weights, X_test_z)
    y_test_all = np.concatenate([y for _, y in tests])
    per_bank, start = [], 0
    for _, y in tests:
        per_bank.append((len(y), auc(y, scores[start:start + len(y)], undefined=0.5)))
        start += len(y)
    rows = sum(n for n, _ in per_bank)
    weighted = sum(n * a for n, a in per_bank) / rows if rows else 0.5
    return CentralResult(weights=weights, auc=float(weighted),
                         auc_pooled=auc(y_test_all, scores, undefined=0.5))

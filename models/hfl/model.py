"""Numpy logistic regression for horizontal training: local data prep, SGD epochs, weights.

Standardisation: every bank standardises its features with the mean and standard deviation of its
own training rows and imputes a missing value with that mean (0 after standardising). Nothing about
a bank's feature distribution leaves the bank; the price is that the global model sees each bank's
features on that bank's own scale, which costs nothing measurable when banks' customers are alike
(the case FedAvg assumes anyway). The centralised twin standardises the pooled rows the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Weights = list[FloatArray]
"""Model parameters as Flower carries them: [coefficients (d,), intercept (1,)]."""

@dataclass(frozen=True)
class HyperParams:
    """What one local update does: epochs of mini-batch SGD at a learning rate, with L2.

    ``batch_size`` 0 means full-batch gradient descent: then one local epoch per round makes
    FedAvg take exactly the step the pooled data would (up to each bank's own standardisation).
    """

    local_epochs: int = 1
    lr: float = 0.1
    batch_size: int = 64
    l2: float = 0.0


@dataclass(frozen=True)
class Split:
    """A bank's rows split into training and held-out parts, standardised on the training part."""

    X_train: FloatArray
    y_train: FloatArray
    X_test: FloatArray
    y_test: FloatArray


def holdout_mask(rows: int, share: float, seed: int) -> npt.NDArray[np.bool_]:
    """Rows held out for evaluation: a seeded draw, the same at the bank and in the baseline."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"held-out share must be between 0 and 1, got {share}")
    return np.random.default_rng(seed).random(rows) < share


def standardise(
    X_train: FloatArray, X_other: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Scale both parts with the training part's mean and std; a missing value becomes 0."""
    mean = np.nanmean(X_train, axis=0) if len(X_train) else np.zeros(X_train.shape[1])
    std = np.nanstd(X_train, axis=0) if len(X_train) else np.ones(X_train.shape[1])
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)

    def scale(X: FloatArray) -> FloatArray:
        Z = (X - mean) / std
        return np.where(np.isnan(Z), 0.0, Z)

    return scale(X_train), scale(X_other)


def prepare(
    X: FloatArray, y: npt.ArrayLike, *, holdout: float = 0.2, seed: int = 0
) -> Split:
    """Hold out a seeded share of rows and standardise on the rest (see the module docstring)."""
    labels = np.asarray(y, dtype=np.float64)
    test = holdout_mask(len(labels), holdout, seed)
    X_train, X_test = standardise(X[~test], X[test])
    return Split(X_train, labels[~test], X_test, labels[test])


def init_weights(features: int) -> Weights:
    """All-zero coefficients and intercept (every party starts from the same model)."""
    return [np.zeros(features, dtype=np.float64), np.zeros(1, dtype=np.float64)]


def predict_proba(weights: Weights, X: FloatArray) -> FloatArray:
    """Probability of default for each row."""
    z = X @ weights[0] + weights[1][0]
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -35.0, 35.0))), dtype=np.float64)


def log_loss(weights: Weights, X: FloatArray, y: FloatArray) -> float:
    """Mean binary cross-entropy."""
    if not len(y):
        return 0.0
    p = np.clip(predict_proba(weights, X), 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def train_epochs(
    weights: Weights, X: FloatArray, y: FloatArray, hp: HyperParams, seed: int
) -> Weights:
    """Run ``hp.local_epochs`` epochs of shuffled mini-batch SGD from ``weights``."""
    w, b = weights[0].astype(np.float64).copy(), float(weights[1][0])
    rng = np.random.default_rng(seed)
    n = len(y)
    batch = hp.batch_size if hp.batch_size > 0 else max(n, 1)
    for _ in range(hp.local_epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            Xb, yb = X[idx], y[idx]
            z = np.clip(Xb @ w + b, -35.0, 35.0)
            residual = 1.0 / (1.0 + np.exp(-z)) - yb
            w -= hp.lr * (Xb.T @ residual / len(idx) + hp.l2 * w)
            b -= hp.lr * float(residual.mean())
    return [w, np.array([b], dtype=np.float64)]


def flatten(weights: Weights) -> FloatArray:
    """One vector of every parameter, for comparisons and norms."""
    return np.concatenate([np.ravel(a) for a in weights])

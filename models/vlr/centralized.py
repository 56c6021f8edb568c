"""The same mini-batch LR on pooled plaintext data (and bank-only), for comparison reports."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.metrics import auc, ks, log_loss, taylor_loss, taylor_loss_terms
from models.vlr import EpochReport, FeatureAlignment, VlrConfig
from models.vlr.label import epoch_order, fixed_batches, split_positions
from models.vlr.preprocess import feature_design, label_design


@dataclass
class CentralizedResult:
    """Best-epoch weights over the pooled design, and the per-epoch validation reports."""

    weights: np.ndarray
    design: np.ndarray
    reports: list[EpochReport] = field(default_factory=list)


def pooled_design(
    label_features: np.ndarray,
    tables: Sequence[tuple[np.ndarray, FeatureAlignment]],
    config: VlrConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """[X_L, 1, X_F1, ...] with every party's own preprocessing; also the L2-penalised columns."""
    n_rows = np.asarray(label_features).shape[0]
    train, _ = split_positions(n_rows, config)
    parts = [label_design(label_features, train)[0]]
    parts += [feature_design(table, alignment, train)[0] for table, alignment in tables]
    design = np.hstack(parts)
    penalized = np.ones(design.shape[1], dtype=bool)
    penalized[parts[0].shape[1] - 1] = False  # the intercept
    return design, penalized


def train_centralized(
    design: np.ndarray,
    labels: np.ndarray,
    penalized: np.ndarray,
    config: VlrConfig,
    *,
    taylor: bool = True,
) -> CentralizedResult:
    """L's split, batches and order, the same update and early stopping (on the Taylor loss, as
    the federated protocol does); `taylor=False` uses the exact logistic gradient and loss."""
    y = np.asarray(labels, dtype=np.float64)
    train, validation = split_positions(y.size, config)
    batches = fixed_batches(train, config)
    weights = np.zeros(design.shape[1])
    result = CentralizedResult(weights.copy(), design)
    best_loss, best_epoch, wait = math.inf, -1, 0
    for epoch in range(config.max_epochs):
        rate = config.learning_rate_at(epoch)
        for index in epoch_order(len(batches), config, epoch):
            rows = batches[int(index)]
            x, z = design[rows], design[rows] @ weights
            d = 0.25 * z + 0.5 - y[rows] if taylor else 1.0 / (1.0 + np.exp(-z)) - y[rows]
            grad = x.T @ d / rows.size + config.l2 * np.where(penalized, weights, 0.0)
            weights = weights - rate * grad
        logits = design[validation] @ weights
        loss = (taylor_loss(taylor_loss_terms(y[validation], logits), validation.size)
                if taylor else log_loss(y[validation], logits))
        improved = loss < best_loss - config.tol
        if improved:
            best_loss, best_epoch, wait = loss, epoch, 0
            result.weights = weights.copy()
        else:
            wait += 1
        stop = wait >= config.patience or epoch + 1 >= config.max_epochs
        y_val = y[validation]
        report = EpochReport(
            epoch, loss, auc(y_val, logits), ks(y_val, logits), improved, stop, best_epoch
        )
        result.reports.append(report)
        if stop:
            break
    return result

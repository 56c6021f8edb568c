"""The same boosting on pooled plaintext data: XGBoost with matching settings, and L alone."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from crypto.he import PlainTwin
from models.metrics import auc
from models.sbt import SbtConfig
from models.sbt.label import LabelParty
from models.sbt.local import run_local


def xgboost_params(config: SbtConfig, base_score: float) -> dict[str, Any]:
    """XGBoost's names for our settings (hist trees, same bins, depth, rate, lambda, gamma)."""
    params: dict[str, Any] = {
        "n_estimators": config.trees,
        "max_depth": config.depth,
        "max_bin": config.bins,
        "learning_rate": config.learning_rate,
        "reg_lambda": config.reg_lambda,
        "min_child_weight": config.min_child_weight,
        "gamma": config.gamma,
        "subsample": config.subsample if config.goss is None else 1.0,
        "tree_method": "hist",
        "objective": "binary:logistic",
        "base_score": base_score,
        "random_state": config.seed,
        "n_jobs": 1,
    }
    return params


def train_xgboost(
    features: np.ndarray, labels: np.ndarray, config: SbtConfig
) -> tuple[Any, float, float]:
    """Local XGBoost on pooled rows: (model, seconds per tree, AUC on the training rows)."""
    import xgboost  # a dev dependency: only comparisons and benchmarks need it

    y = np.asarray(labels, dtype=np.float64)
    model = xgboost.XGBClassifier(**xgboost_params(config, float(y.mean())))
    started = time.perf_counter()
    model.fit(np.asarray(features, dtype=np.float64), y)
    seconds = (time.perf_counter() - started) / config.trees
    margin = model.predict(features, output_margin=True)
    return model, seconds, auc(y, margin)


def train_pooled(features: np.ndarray, labels: np.ndarray, config: SbtConfig) -> LabelParty:
    """Our algorithm with every column at L (no feature party): the federated model's reference."""
    label = LabelParty("pooled", features, labels, [], config, suite=PlainTwin.suite_for_testing())
    run_local(label, [])
    return label

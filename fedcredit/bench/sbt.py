"""`fedcredit bench sbt`: encrypted SecureBoost, its plaintext twin and local XGBoost, same data."""

from __future__ import annotations

import numpy as np

from crypto.he import BFV_SUITE, PlainTwin, SbtSuite
from fedcredit.bench.vlr import SyntheticVertical, synthetic_vertical
from fedcredit.evaluate import missing_baseline
from models.sbt import SbtConfig
from models.sbt.centralized import train_xgboost
from models.sbt.feature import FeatureParty
from models.sbt.label import LabelParty
from models.sbt.local import LocalRun, run_local


def _train(
    data: SyntheticVertical, config: SbtConfig, suite: SbtSuite
) -> tuple[LocalRun, LabelParty]:
    label = LabelParty("bench", data.label_features, data.labels, ["host"], config, suite=suite)
    host = FeatureParty("host", "bench", data.host_table, data.alignment, config, suite=suite)
    return run_local(label, [host]), label


def run_sbt_benchmark(
    rows: int,
    label_features: int,
    host_features: int,
    trees: int = 1,
    depth: int = 3,
    bins: int = 32,
    seed: int = 0,
) -> dict[str, float | int | bool | str | None]:
    """Seconds per tree encrypted, twin and local XGBoost (same run), ratios, bytes, AUC.

    Without xgboost installed its figures are None and `baseline_note` says how to get it.

    Every row trains and is scored (train = test, as FATE's benchmarks do); L and F run one after
    another in this process, so a tree's time is the sum of both parties' work. Key generation and
    the public-context transfer are set-up, reported apart.
    """
    data = synthetic_vertical(rows, label_features, host_features, seed)
    config = SbtConfig(trees=trees, depth=depth, bins=bins, learning_rate=0.3, seed=seed)
    encrypted, label = _train(data, config, BFV_SUITE)
    plain, twin = _train(data, config, PlainTwin.suite_for_testing())
    host_in_label_order = np.empty_like(data.host_table)
    host_in_label_order[data.alignment.positions] = data.host_table[data.alignment.own_rows]
    pooled = np.hstack([data.label_features, host_in_label_order])
    note = missing_baseline("xgboost")
    xgb_seconds: float | None = None
    xgb_auc: float | None = None
    if note is None:
        _, xgb_seconds, xgb_auc = train_xgboost(pooled, data.labels, config)
    seconds = float(np.mean(encrypted.tree_seconds))
    seconds_plain = float(np.mean(plain.tree_seconds))
    result: dict[str, float | int | bool | str | None] = {
        "rows": rows,
        "label_features": label_features,
        "host_features": host_features,
        "trees": trees,
        "depth": depth,
        "bins": bins,
        "seconds_per_tree": seconds,
        "seconds_per_tree_plain": seconds_plain,
        "xgboost_seconds_per_tree": xgb_seconds,
        "ratio_to_plain": seconds / seconds_plain,
        "ratio_to_xgboost": None if xgb_seconds is None else seconds / xgb_seconds,
        "bytes_per_tree": int(np.mean(encrypted.tree_bytes)),
        "setup_seconds": encrypted.setup_seconds,
        "setup_bytes": encrypted.setup_bytes,
        "auc": label.reports[-1].auc,
        "auc_plain": twin.reports[-1].auc,
        "xgboost_auc": xgb_auc,
        "same_trees": all(a.equal(b) for a, b in zip(label.trees, twin.trees, strict=True)),
    }
    if note is not None:
        result["baseline_note"] = note
    return result

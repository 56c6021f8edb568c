"""Vertical-LR benchmark: encrypted run and its plaintext twin on the same synthetic data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crypto.he.interface import LrSuite
from crypto.he.lr_arbiter import CKKS_LR_SUITE
from crypto.he.lr_plain import PLAIN_LR_SUITE
from models.vlr import FeatureAlignment, VlrConfig
from models.vlr.arbiter import Arbiter
from models.vlr.feature import FeatureParty
from models.vlr.label import LabelParty
from models.vlr.local import LocalRun, run_local

# The previous protocol (plaintext gradients at every party, issue 11) on this benchmark's default
# shape, measured with `fedcredit bench vlr` at commit ab5a541 on this kind of machine; it no
# longer exists to be run beside the new one.
OLD_PROTOCOL_SECONDS = 17.2


@dataclass(frozen=True)
class SyntheticVertical:
    """A bank table with labels and one feature holder's table (stored in its own row order)."""

    label_features: np.ndarray
    labels: np.ndarray
    host_table: np.ndarray
    alignment: FeatureAlignment


def synthetic_vertical(
    rows: int, label_features: int, host_features: int, seed: int
) -> SyntheticVertical:
    """Gaussian features, a sparse true model split across both parties, ~15% positives."""
    rng = np.random.default_rng(seed)
    x_label = rng.standard_normal((rows, label_features))
    x_host = rng.standard_normal((rows, host_features))
    weights = rng.standard_normal(label_features + host_features)
    weights *= rng.random(weights.size) < 0.2
    weights /= max(1.0, float(np.linalg.norm(weights)))
    logits = np.hstack([x_label, x_host]) @ weights * 2.0 - 2.0
    labels = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logits))).astype(np.float64)
    own_rows = rng.permutation(rows)  # the host keeps its rows in its own order
    host_table = np.empty_like(x_host)
    host_table[own_rows] = x_host
    return SyntheticVertical(
        x_label, labels, host_table, FeatureAlignment(rows, np.arange(rows), own_rows)
    )


def _train(
    data: SyntheticVertical, config: VlrConfig, suite: LrSuite
) -> tuple[LocalRun, np.ndarray]:
    label = LabelParty("bench", data.label_features, data.labels, ["host"], config, suite=suite)
    host = FeatureParty("host", "bench", data.host_table, data.alignment, config, suite=suite)
    run = run_local(label, [host], Arbiter("bench", suite=suite))
    return run, np.concatenate([label.weights, host.weights])


def run_vlr_benchmark(
    rows: int,
    label_features: int,
    host_features: int,
    epochs: int = 1,
    batch_size: int = 4096,
    seed: int = 0,
) -> dict[str, float | int]:
    """Seconds per epoch (encrypted and twin, same run), their ratio, bytes per epoch, AUC.

    A fifth of the rows validates (the per-epoch encrypted loss and the final AUC); the roles
    run one after another in this process, so the time is the sum of all parties' work. Key pair
    generation and context transfer are set-up, reported apart from the per-epoch figures.
    """
    data = synthetic_vertical(rows, label_features, host_features, seed)
    config = VlrConfig(
        learning_rate=0.15,
        batch_size=batch_size,
        min_batch=min(64, batch_size),
        max_epochs=epochs,
        patience=epochs,
        validation_fraction=0.2,
        seed=seed,
        cache_bytes=(2 << 30) if epochs > 1 else 0,  # the cache only pays from the second epoch
    )
    encrypted, enc_weights = _train(data, config, CKKS_LR_SUITE)
    plain, plain_weights = _train(data, config, PLAIN_LR_SUITE)
    seconds = float(np.mean(encrypted.epoch_seconds))
    seconds_plain = float(np.mean(plain.epoch_seconds))
    return {
        "rows": rows,
        "label_features": label_features,
        "host_features": host_features,
        "batch_size": batch_size,
        "epochs": len(encrypted.reports),
        "seconds_per_epoch": seconds,
        "seconds_per_epoch_plain": seconds_plain,
        "ratio": seconds / seconds_plain,
        "bytes_per_epoch": int(np.mean(encrypted.epoch_bytes)),
        "setup_seconds": encrypted.setup_seconds,
        "setup_bytes": encrypted.setup_bytes,
        "auc": (encrypted.final or {}).get("auc", float("nan")),
        "auc_plain": (plain.final or {}).get("auc", float("nan")),
        "old_protocol_seconds_per_epoch": OLD_PROTOCOL_SECONDS,
        "max_weight_gap": float(np.max(np.abs(enc_weights - plain_weights))),
    }

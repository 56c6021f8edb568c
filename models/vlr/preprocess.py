"""Per-party preprocessing: standardise on own training rows, impute means, flag absent rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.vlr import FeatureAlignment


@dataclass(frozen=True)
class Standardizer:
    """Column means and scales fitted on a party's own training rows (NaN = missing)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, rows: np.ndarray) -> Standardizer:
        rows = np.asarray(rows, dtype=np.float64)
        present = ~np.isnan(rows)
        count = present.sum(axis=0)
        safe = np.maximum(count, 1)
        mean = np.where(present, rows, 0.0).sum(axis=0) / safe
        var = (np.where(present, rows - mean, 0.0) ** 2).sum(axis=0) / safe
        std = np.sqrt(var)
        return cls(mean=mean, scale=np.where(std > 1e-12, std, 1.0))

    def transform(self, rows: np.ndarray) -> np.ndarray:
        """Standardised rows; a missing value becomes 0, the training mean."""
        z = (np.asarray(rows, dtype=np.float64) - self.mean) / self.scale
        out: np.ndarray = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
        return out


def train_mask(n_rows: int, train_positions: np.ndarray) -> np.ndarray:
    mask = np.zeros(n_rows, dtype=bool)
    mask[train_positions] = True
    return mask


def label_design(
    features: np.ndarray, train_positions: np.ndarray
) -> tuple[np.ndarray, Standardizer]:
    """L's design matrix in training order: standardised features, then an intercept column."""
    features = np.asarray(features, dtype=np.float64)
    scaler = Standardizer.fit(features[train_positions])
    ones = np.ones((features.shape[0], 1))
    return np.hstack([scaler.transform(features), ones]), scaler


def has_indicator(alignment: FeatureAlignment) -> bool:
    """A presence column is added when F does not hold every training position."""
    return int(np.asarray(alignment.positions).size) < alignment.n_rows


def feature_design(
    table: np.ndarray, alignment: FeatureAlignment, train_positions: np.ndarray
) -> tuple[np.ndarray, Standardizer]:
    """F's design matrix over all `n_rows` positions: rows F lacks are 0, presence flag 0."""
    table = np.asarray(table, dtype=np.float64)
    positions = np.asarray(alignment.positions, dtype=np.int64)
    own = np.asarray(alignment.own_rows, dtype=np.int64)
    in_train = train_mask(alignment.n_rows, train_positions)[positions]
    scaler = Standardizer.fit(table[own[in_train]])
    width = table.shape[1] + int(has_indicator(alignment))
    design = np.zeros((alignment.n_rows, width))
    design[positions, : table.shape[1]] = scaler.transform(table[own])
    if has_indicator(alignment):
        design[positions, -1] = 1.0
    return design, scaler

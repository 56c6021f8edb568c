"""The bank's training table as every label role takes it: float columns, one 0/1 label a row."""

from __future__ import annotations

import numpy as np


def labelled_table(features: np.ndarray, labels: np.ndarray, *, both_classes: bool = True,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(features as float64 (rows, columns), labels as float64 (rows,)); `ValueError` unless
    there is one label per row, every label is 0 or 1 and (with `both_classes`) both occur."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if features.ndim != 2 or features.shape[0] != labels.size:
        raise ValueError("features must be (rows, columns) with one label per row")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0 or 1" + (", with both classes present"
                                                    if both_classes else ""))
    if both_classes and (labels.size == 0 or labels.min() == labels.max()):
        raise ValueError("labels must be 0 or 1, with both classes present")
    return features, labels

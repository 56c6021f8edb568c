"""optbinning's optimal (monotonic) merge of pre-bins, run on per-pre-bin counts alone.

The one place fedcredit calls optbinning (a well-kept library banks already trust), through its
public API: `OptimalBinning.fit` on a weighted two-rows-per-pre-bin sample (x = pre-bin index,
y = 0 weighted by its non-events and y = 1 by its events) with the pre-bins as `user_splits`. That
reproduces the solver's input exactly (optbinning counts pre-bins as `np.sum(sample_weight)` per
class, tested against a fit on raw rows in tests/unit/models/test_binning.py), so the bank can
decide merges of a feature node's pre-bins from the per-pre-bin counts it may learn, without
edges or rows. Returns which pre-bin boundaries survive; nothing else leaves this module.
"""

from __future__ import annotations

import numpy as np


def optimal_merges(nonevent: np.ndarray, event: np.ndarray, *, monotonic_trend: str | None,
                   max_n_bins: int | None, min_bin_rows: int,
                   time_limit: float = 30.0) -> np.ndarray:
    """Boolean flags, one per boundary between consecutive pre-bins: True where optbinning's
    optimal binning keeps it. Empty pre-bins are not allowed (every pre-bin has >= the floor)."""
    from optbinning import OptimalBinning

    nonevent = np.asarray(nonevent, dtype=np.int64)
    event = np.asarray(event, dtype=np.int64)
    k = nonevent.size
    if k <= 1:
        return np.zeros(max(k - 1, 0), dtype=bool)
    if np.any(nonevent + event <= 0) or np.any(nonevent < 0) or np.any(event < 0):
        raise ValueError("every pre-bin needs a positive row count")
    x = np.repeat(np.arange(k, dtype=np.float64), 2)
    y = np.tile(np.array([0, 1]), k)
    weight = np.column_stack([nonevent, event]).reshape(-1).astype(np.float64)
    keep = weight > 0
    boundaries = np.arange(k - 1, dtype=np.float64) + 0.5
    total = float(weight.sum())
    fit = OptimalBinning(
        name="prebins", dtype="numerical", solver="cp", monotonic_trend=monotonic_trend,
        max_n_bins=max_n_bins, min_bin_size=min(0.5, min_bin_rows / total),
        user_splits=boundaries, time_limit=int(max(1, time_limit)))
    fit.fit(x[keep], y[keep], sample_weight=weight[keep])
    if fit.status not in ("OPTIMAL", "FEASIBLE"):
        return np.ones(k - 1, dtype=bool)  # the solver found nothing: keep the pre-bins
    splits = np.asarray(fit.splits, dtype=np.float64)
    kept: np.ndarray = np.isin(boundaries, splits)
    return kept

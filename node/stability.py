"""Population stability index (PSI) with the usual bands: the bank's score PSI, and each feature
node's PSI of its own features between its reference and current snapshots."""

from __future__ import annotations

import numpy as np

BANDS = ((0.10, "stable"), (0.25, "watch"), (float("inf"), "shifted"))
"""PSI < 0.10 stable, 0.10–0.25 watch (some shift), ≥ 0.25 shifted (act)."""


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """PSI of `actual` against `expected` over `expected`'s quantile bins (NaNs dropped; each
    bin's share floored at 1e-4 so an empty bin does not make it infinite)."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    e, a = e[~np.isnan(e)], a[~np.isnan(a)]
    if e.size == 0 or a.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(e, np.linspace(0, 1, bins + 1))[1:-1])
    e_share = np.bincount(np.searchsorted(edges, e, side="right"), minlength=edges.size + 1)
    a_share = np.bincount(np.searchsorted(edges, a, side="right"), minlength=edges.size + 1)
    p = np.maximum(e_share / e.size, 1e-4)
    q = np.maximum(a_share / a.size, 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def band(value: float) -> str:
    """The band a PSI falls in ("n/a" when there was nothing to compare)."""
    if np.isnan(value):
        return "n/a"
    return next(name for bound, name in BANDS if value < bound)

"""A trained model's validation report at the bank: figures, tables and curves from the labels
and the model's joint scores (PD), as a versioned JSON-ready document.

Everything in it is aggregated: per bin, per segment, or curve points each standing for at least
1/`CURVE_POINTS` of the rows; no row's score is written. The metrics themselves are in
`models.metrics` (one place); this module only assembles them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from models.metrics import (
    auc,
    decile_table,
    gini,
    ks,
    ks_curve,
    psi,
    roc_curve,
    score_histogram,
)

REPORT_SCHEMA = 1
CURVE_POINTS = 200  # a curve is thinned to about this many points (population share steps)
STABLE_PSI, SHIFTED_PSI = 0.10, 0.25

Segments = Mapping[str, Mapping[str, np.ndarray]]
"""Segment breakdowns: {"tier": {"1": row mask, "2": row mask, ...}, "credit_white": {...}}."""


def validation_report(y: np.ndarray, pd: np.ndarray, *, points: np.ndarray | None = None,
                      segments: Segments | None = None, population: np.ndarray | None = None,
                      bins: int = 10, about: Mapping[str, Any] | None = None,
                      ) -> dict[str, Any]:
    """The report of a model whose probabilities of default on labelled rows are `pd`.

    `points`: the bank's policy score of the same rows (the score distribution and the decile
    table's points ranges use it; else PD). `population`: PDs of a scoring population, compared
    with `pd` for stability (PSI). `about`: what the caller knows of the model and the rows.
    """
    y = np.asarray(y) != 0
    pd = np.asarray(pd, dtype=np.float64)
    if y.shape != pd.shape or y.ndim != 1:
        raise ValueError(f"{y.size} labels for {pd.size} scores")
    if y.all() or not y.any():
        raise ValueError(f"the {y.size} rows hold one class only: no validation report")
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA, **dict(about or {}),
        "rows": int(y.size), "bads": int(y.sum()), "bad_rate": float(y.mean()),
        "auc": auc(y, pd), "ks": ks(y, pd), "gini": gini(y, pd),
        "deciles": decile_table(y, pd, bins=bins, points=points),
        "score_distribution": {"score": "pd" if points is None else "points",
                               **score_histogram(y, pd if points is None else points)},
        "curves": curves(y, pd),
        "segments": {name: segment_rows(y, pd, groups)
                     for name, groups in (segments or {}).items()},
        "stability": None if population is None else stability(pd, population, bins),
    }
    safe: dict[str, Any] = _json_safe(report)
    return safe


def curves(y: np.ndarray, pd: np.ndarray) -> dict[str, dict[str, list[float]]]:
    """ROC and KS curves, riskiest rows first, thinned to about `CURVE_POINTS` points."""
    share, bads, goods = ks_curve(y, pd)
    fpr, tpr, _ = roc_curve(y, pd)
    keep = np.unique(np.searchsorted(share, np.linspace(0.0, 1.0, CURVE_POINTS + 1)))
    keep = keep[keep < share.size]
    return {"roc": {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()},
            "ks": {"population": share[keep].tolist(), "bads": bads[keep].tolist(),
                   "goods": goods[keep].tolist()}}


def segment_rows(y: np.ndarray, pd: np.ndarray,
                 groups: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Rows, bads, bad rate, mean PD and (with both classes present) AUC, KS and Gini per
    group; empty groups are left out."""
    out: dict[str, dict[str, Any]] = {}
    for value, mask in groups.items():
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            continue
        ys, ps = y[mask], pd[mask]
        both = bool(ys.any() and not ys.all())
        out[value] = {"rows": int(mask.sum()), "bads": int(ys.sum()),
                      "bad_rate": float(ys.mean()), "mean_pd": float(ps.mean()),
                      "auc": auc(ys, ps) if both else None, "ks": ks(ys, ps) if both else None,
                      "gini": gini(ys, ps) if both else None}
    return out


def stability(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """PSI of a scoring population's PDs against the validation rows' PDs, with its reading."""
    total, table = psi(expected, actual, bins=bins)
    reading = ("stable" if total < STABLE_PSI else
               "some shift" if total < SHIFTED_PSI else "shifted")
    return {"psi": total, "reading": reading, "population_rows": int(np.asarray(actual).size),
            "bins": table}


def _json_safe(value: Any) -> Any:
    """NaN and infinities as None, numpy scalars as Python numbers, all the way down."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

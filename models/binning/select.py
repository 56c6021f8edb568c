"""Characteristics of a binning job at the bank, and their selection by IV, correlation, VIF."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.binning.bins import ColumnBins, woe_iv


@dataclass
class Characteristic:
    """One column of one party: per-slot counts, WOE and IV (the bank's IV table row)."""

    party: str
    name: str
    counts: np.ndarray
    events: np.ndarray
    woe: np.ndarray
    iv_bins: np.ndarray
    value_bins: int
    own: ColumnBins | None = None  # the bank's own column: it knows its edges
    selected: bool = False
    reason: str = ""
    correlated_with: list[str] = field(default_factory=list)
    vif: float | None = None  # in the last VIF round it took part in (jobs with max_vif)

    @classmethod
    def of(cls, party: str, name: str, counts: np.ndarray, events: np.ndarray, value_bins: int,
           own: ColumnBins | None = None) -> Characteristic:
        counts, events = np.asarray(counts, np.int64), np.asarray(events, np.int64)
        woe, iv = woe_iv(counts - events, events)
        return cls(party, name, counts, events, woe, iv, value_bins, own)

    @property
    def key(self) -> str:
        return f"{self.party}:{self.name}"

    @property
    def iv(self) -> float:
        return float(self.iv_bins.sum())

    def slots(self) -> list[int]:
        """The slots a table shows: the value bins, then special and missing."""
        bins = self.counts.size - 2
        return [*range(self.value_bins), bins, bins + 1]

    def rows(self) -> list[dict[str, Any]]:
        """Per bin: label (an index for another party's column; edges for the bank's own),
        rows, events, non-events, WOE, IV."""
        bins = self.counts.size - 2
        edges = None if self.own is None else self.own.edges
        out = []
        for b in self.slots():
            if b >= bins:
                label = "special" if b == bins else "missing"
            elif edges is not None:
                lo = "-inf" if b == 0 else f"{edges[b - 1]:.6g}"
                hi = "inf" if b == edges.size else f"{edges[b]:.6g}"
                label = f"[{lo}, {hi})"
            else:
                label = f"bin {b}"
            out.append({"bin": label, "count": int(self.counts[b]),
                        "event": int(self.events[b]),
                        "nonevent": int(self.counts[b] - self.events[b]),
                        "woe": float(self.woe[b]), "iv": float(self.iv_bins[b])})
        return out

    def summary(self) -> dict[str, Any]:
        """The IV table row the job reports (no per-bin figures)."""
        row = {"party": self.party, "name": self.name, "iv": round(self.iv, 6),
               "bins": self.value_bins, "selected": self.selected, "reason": self.reason}
        return row if self.vif is None else {**row, "vif": round(self.vif, 4)}

    def to_json(self) -> dict[str, Any]:
        return {**self.summary(), "iv": self.iv, "bins_table": self.rows(),
                "correlated_with": self.correlated_with}


def pearson(cov: float, var_a: float, var_b: float) -> float:
    """r from a covariance and two variances; 0 for a constant column."""
    if var_a <= 0 or var_b <= 0:
        return 0.0
    return max(-1.0, min(1.0, cov / math.sqrt(var_a * var_b)))


def select(table: list[Characteristic], correlated: Mapping[tuple[str, str], float],
           min_iv: float, max_correlation: float | None) -> None:
    """Mark each characteristic selected or not, with the reason: IV below `min_iv`; else, in
    falling IV order, |r| above `max_correlation` with one already selected (known pairs only)."""
    pairs: dict[str, dict[str, float]] = {}
    for (a, b), r in correlated.items():
        pairs.setdefault(a, {})[b] = r
        pairs.setdefault(b, {})[a] = r
    kept: list[str] = []
    for c in sorted(table, key=lambda c: (-c.iv, c.key)):
        if c.iv < min_iv:
            c.selected, c.reason = False, f"IV {c.iv:.4f} below {min_iv:g}"
            continue
        near = pairs.get(c.key, {})
        if max_correlation is not None:
            c.correlated_with = sorted(k for k, r in near.items() if abs(r) > max_correlation)
            blocking = [k for k in kept if abs(near.get(k, 0.0)) > max_correlation]
            if blocking:
                r = near[blocking[0]]
                shown = f"|r| > {max_correlation:g}" if math.isinf(r) else f"r = {r:.3f}"
                c.selected, c.reason = False, f"correlated with {blocking[0]} ({shown})"
                continue
        c.selected, c.reason = True, ""
        kept.append(c.key)


EIGEN_FLOOR = 1e-6  # smallest eigenvalue a correlation matrix keeps (below: regularised)


def variance_inflation(r: np.ndarray) -> tuple[np.ndarray, bool]:
    """VIF_j = [R^-1]_jj of a correlation matrix (= 1 / (1 - R_j^2) of column j regressed on
    the others with an intercept), and whether R had to be regularised.

    R is assembled from exact correlations (the bank's own, within a feature node) and decoded
    inner products of quantised WOE columns (across parties): when columns are collinear it can
    be singular or even slightly indefinite (VIFs negative or arbitrary). A pseudo-inverse would
    then report small VIFs for exactly the collinear columns, so instead its eigenvalues are
    raised to at least 1e-6 and the diagonal rescaled to 1 (a valid correlation matrix): such
    columns get VIFs of the order of 1e5..1e6 and any finite limit drops them."""
    if r.shape[0] == 0:
        return np.zeros(0), False
    values, vectors = np.linalg.eigh(r)
    singular = bool(values.min() < EIGEN_FLOOR)
    if singular:
        r = (vectors * np.maximum(values, EIGEN_FLOOR)) @ vectors.T
        scale = 1 / np.sqrt(np.diag(r))
        r = r * scale[:, None] * scale[None, :]
    return np.diag(np.linalg.inv(r)).copy(), singular


def vif_filter(table: list[Characteristic], correlated: Mapping[tuple[str, str], float],
               max_vif: float) -> bool:
    """Among the selected characteristics, drop one at a time the one with the highest VIF above
    `max_vif` (on ties the lowest IV, then the later key, as `select` keeps the earlier),
    recomputing after each drop; every one that took part reports its last VIF. Needs every
    pair's r. Returns whether any round was regularised."""
    pairs: dict[tuple[str, str], float] = {}
    for (a, b), r in correlated.items():
        pairs[(a, b)] = pairs[(b, a)] = r
    kept = sorted((c for c in table if c.selected), key=lambda c: c.key)
    regularised = False
    while kept:
        keys = [c.key for c in kept]
        matrix = np.eye(len(kept))
        for i, j in zip(*np.triu_indices(len(kept), 1), strict=True):
            known = pairs.get((keys[i], keys[j]))
            if known is None or not math.isfinite(known):
                raise ValueError(f"no correlation known between {keys[i]} and {keys[j]}")
            matrix[i, j] = matrix[j, i] = known
        vifs, singular = variance_inflation(matrix)
        regularised |= singular
        for c, v in zip(kept, vifs.tolist(), strict=True):
            c.vif = v
        top = float(vifs.max())
        if top <= max_vif:
            break
        tied = [c for c, v in zip(kept, vifs.tolist(), strict=True) if v >= top * (1 - 1e-9)]
        drop = min(sorted(tied, key=lambda c: c.key, reverse=True), key=lambda c: c.iv)
        drop.selected, drop.reason = False, f"VIF {drop.vif or top:.3g} above {max_vif:g}"
        kept.remove(drop)
    return regularised

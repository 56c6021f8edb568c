"""Characteristics of a binning job at the bank, and their selection by IV and correlation."""

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
        return {"party": self.party, "name": self.name, "iv": round(self.iv, 6),
                "bins": self.value_bins, "selected": self.selected, "reason": self.reason}

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

"""Bins of one party's own columns: quantile cut points, floor merges, codes, WOE and IV.

Slot layout of every column of a job (fixed, so encrypted histograms line up): value bins
0..k-1 (k <= `bins`, left-closed intervals [e_{b-1}, e_b) as optbinning's `np.digitize`), then
slot `bins` for special values and slot `bins + 1` for missing values (NaN, and the training rows a
feature node does not hold). WOE and IV follow optbinning's `BinningTable`: WOE = ln(%non-event /
%event), IV = sum (%non-event - %event) WOE, both 0 in a bin without events or without non-events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """At most bins-1 increasing cut points from the quantiles of `values` (finite, non-special)."""
    if values.size == 0:
        return np.zeros(0)
    unique = np.unique(values)
    if unique.size <= bins:
        return np.asarray(unique[1:], dtype=np.float64)  # one bin per value
    cuts = np.unique(np.quantile(values, np.arange(1, bins) / bins))
    kept: np.ndarray = cuts[(cuts > unique[0]) & (cuts <= unique[-1])]
    return kept


def merge_small(edges: np.ndarray, counts: np.ndarray, floor: int) -> tuple[np.ndarray, int]:
    """Drop cut points until every non-empty value bin has at least `floor` rows: the smallest
    bin below the floor joins its smaller neighbour. Returns (edges, number of merges)."""
    edges, counts = np.asarray(edges, np.float64).copy(), np.asarray(counts, np.int64).copy()
    merges = 0
    while counts.size > 1:
        small = np.flatnonzero((counts > 0) & (counts < floor))
        if small.size == 0:
            break
        b = int(small[np.argmin(counts[small])])
        if b == 0:
            join = 0
        elif b == counts.size - 1:
            join = b - 1
        else:
            join = b - 1 if counts[b - 1] <= counts[b + 1] else b
        counts[join] += counts[join + 1]
        counts = np.delete(counts, join + 1)
        edges = np.delete(edges, join)  # the cut between bins join and join + 1
        merges += 1
    return edges, merges


@dataclass
class ColumnBins:
    """One column's bins at the party that owns it (the edges never leave that party).

    `special_to` / `missing_to` name the slot special / missing values land in: their own slots,
    or the slot they were folded into because they held fewer rows than the floor.
    """

    name: str
    edges: np.ndarray
    bins: int  # the job's slot layout: special = bins, missing = bins + 1
    special_codes: tuple[float, ...] = ()
    special_to: int = -1
    missing_to: int = -1
    woe: np.ndarray | None = None  # per slot, once the bank sent it (or computed it)
    merges: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.edges = np.asarray(self.edges, dtype=np.float64)
        if self.special_to < 0:
            self.special_to = self.bins
        if self.missing_to < 0:
            self.missing_to = self.bins + 1

    @property
    def slots(self) -> int:
        return self.bins + 2

    @property
    def value_bins(self) -> int:
        return int(self.edges.size) + 1

    def codes(self, values: np.ndarray, held: np.ndarray | None = None) -> np.ndarray:
        """Slot of every value; rows not `held` (not at this party) go to the missing slot."""
        values = np.asarray(values, dtype=np.float64)
        special = np.isin(values, np.asarray(self.special_codes, np.float64)) if \
            self.special_codes else np.zeros(values.shape, bool)
        missing = np.isnan(values)
        codes = np.searchsorted(self.edges, np.where(missing | special, 0.0, values),
                                side="right").astype(np.int64)
        codes[special] = self.special_to
        codes[missing] = self.missing_to
        if held is not None:
            codes[~held] = self.bins + 1
        return codes

    def transform(self, values: np.ndarray, held: np.ndarray | None = None) -> np.ndarray:
        """WOE of every value (this party's WOE-encoded column, for a later WOE scorecard)."""
        if self.woe is None:
            raise ValueError(f"column {self.name} has no WOE (the bank did not share it)")
        return np.asarray(self.woe[self.codes(values, held)], dtype=np.float64)

    def merge(self, kept: np.ndarray) -> None:
        """Keep only the value-bin boundaries flagged in `kept` (the bank's merge decisions)."""
        kept = np.asarray(kept, dtype=bool)
        if kept.shape != self.edges.shape:
            raise ValueError(f"{kept.size} boundary flags for {self.edges.size} boundaries")
        folded = {self.special_to, self.missing_to} - {self.bins, self.bins + 1}
        new_index = np.concatenate([[0], np.cumsum(kept)])
        if folded:  # a value bin holding folded special/missing rows: follow its merge
            if self.special_to < self.bins:
                self.special_to = int(new_index[self.special_to])
            if self.missing_to < self.bins:
                self.missing_to = int(new_index[self.missing_to])
        self.edges = self.edges[kept]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "edges": self.edges.tolist(), "bins": self.bins,
                "special_codes": list(self.special_codes), "special_to": self.special_to,
                "missing_to": self.missing_to,
                "woe": None if self.woe is None else self.woe.tolist(), "merges": self.merges}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ColumnBins:
        woe = data.get("woe")
        return cls(name=str(data["name"]), edges=np.asarray(data["edges"], np.float64),
                   bins=int(data["bins"]), special_codes=tuple(data["special_codes"]),
                   special_to=int(data["special_to"]), missing_to=int(data["missing_to"]),
                   woe=None if woe is None else np.asarray(woe, np.float64),
                   merges=dict(data.get("merges", {})))


def bin_column(name: str, values: np.ndarray, held: np.ndarray, bins: int, floor: int,
               special_codes: tuple[float, ...]) -> ColumnBins:
    """Quantile bins of one column on the rows this party holds, every non-empty slot that a
    peer sees at least `floor` rows: small value bins merge with a neighbour, a small special
    bin folds into the missing slot, a small missing group (of held rows) into the largest value
    bin. Label-free: it reads this party's own values only."""
    values = np.asarray(values, dtype=np.float64)
    special = np.isin(values, np.asarray(special_codes, np.float64)) & held
    missing = np.isnan(values) & held
    plain = held & ~special & ~missing
    column = ColumnBins(name, quantile_edges(values[plain], bins), bins, tuple(special_codes))
    counts = np.bincount(np.searchsorted(column.edges, values[plain], side="right"),
                         minlength=column.value_bins)
    column.edges, merged = merge_small(column.edges, counts, floor)
    counts = np.bincount(np.searchsorted(column.edges, values[plain], side="right"),
                         minlength=column.value_bins)
    column.merges = {"value_bins": merged}
    n_special, n_missing = int(special.sum()), int(missing.sum())
    if 0 < n_special < floor:
        column.special_to, n_missing = bins + 1, n_missing + n_special
        column.merges["special"] = 1
    if 0 < n_missing < floor:  # held NaN rows only: the rows not held are the peer's knowledge
        column.missing_to = int(np.argmax(counts))
        if column.special_to == bins + 1:
            column.special_to = column.missing_to
        column.merges["missing"] = 1
    return column


def woe_iv(nonevent: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin WOE and IV of one characteristic (every slot, as optbinning's BinningTable)."""
    nonevent, event = np.asarray(nonevent, np.float64), np.asarray(event, np.float64)
    woe, iv = np.zeros(nonevent.size), np.zeros(nonevent.size)
    t_nonevent, t_event = nonevent.sum(), event.sum()
    mask = (event > 0) & (nonevent > 0)
    if t_event <= 0 or t_nonevent <= 0:
        return woe, iv
    rate = event[mask] / (event[mask] + nonevent[mask])
    woe[mask] = np.log(1.0 / rate - 1.0) + np.log(t_event / t_nonevent)
    p_event, p_nonevent = event[mask] / t_event, nonevent[mask] / t_nonevent
    iv[mask] = (p_event - p_nonevent) * np.log(p_event / p_nonevent)
    return woe, iv


def slot_labels(bins: int, value_bins: int) -> list[str]:
    """The names the bank sees for another party's slots: indices, never edges."""
    return [f"bin {b}" for b in range(value_bins)] + ["special", "missing"]


def slot_counts(codes: np.ndarray, slots: int) -> np.ndarray:
    """(columns, slots) row counts of a (rows, columns) code matrix."""
    rows, cols = codes.shape
    index = (np.arange(cols) * slots + codes).reshape(-1)
    return np.bincount(index, minlength=cols * slots).reshape(cols, slots)

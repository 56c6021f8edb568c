"""One party's scorecard: its characteristics' bins, weights, points per bin, and reason codes.

The formulas are in the package docstring; this module is the one place that computes them.
Saved as JSON with a schema version (never pickle): a party's `scorecard.json`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.errors import ModelFormatError
from models.binning.bins import ColumnBins
from models.scorecard import JOINT, MAX_REASONS

MODEL_SCHEMA = 1
KIND = "scorecard-party"


def points_per_slot(woe: np.ndarray, beta: float, mean: float, factor: float) -> np.ndarray:
    """Points of every slot of one characteristic: −factor·β·(WOE − μ)."""
    out: np.ndarray = -factor * beta * (np.asarray(woe, np.float64) - mean)
    return out


def scale(pdo: float, base_points: float, base_odds: float) -> tuple[float, float]:
    """(factor, offset) of a points scale: PDO / ln 2 and base − factor·ln(odds)."""
    factor = pdo / float(np.log(2.0))
    return factor, base_points - factor * float(np.log(base_odds))


def _extra_slots(column: ColumnBins, role: str) -> list[tuple[str, int]]:
    """The rows a points table shows besides the value bins: special values (when the job has
    special codes), missing values, and at a feature node the rows it does not hold (they sit in
    the missing slot, or its own one when held missing values were folded into a value bin)."""
    out = [("special", column.special_to)] if column.special_codes else []
    out.append(("missing", column.missing_to))
    if role == "feature" and column.missing_to != column.bins + 1:
        out.append(("not held", column.bins + 1))
    return out


def _reachable(column: ColumnBins, role: str) -> list[int]:
    """Slots a row can land in."""
    return sorted({*range(column.value_bins), *(s for _, s in _extra_slots(column, role))})


@dataclass(frozen=True)
class PartyCard:
    """A party's part of a scorecard: never leaves that party (the bank gets min/max totals)."""

    party: str
    role: str
    job: str
    binning_job: str
    columns: tuple[ColumnBins, ...]
    beta: np.ndarray  # per characteristic, on the WOE scale (w_j / σ_j)
    mean: np.ndarray  # per characteristic, the WOE column's training mean μ_j
    intercept: float  # the bank's; 0 at a feature node
    factor: float
    offset: float

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def base_points(self) -> float:
        """The bank's base points: offset − factor·intercept (0 at a feature node)."""
        return self.offset - self.factor * self.intercept if self.role == "label" else 0.0

    def slot_points(self, j: int) -> np.ndarray:
        column = self.columns[j]
        assert column.woe is not None
        return points_per_slot(column.woe, float(self.beta[j]), float(self.mean[j]), self.factor)

    def codes(self, rows: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        """(rows, characteristics) slots of raw values (columns in `names` order)."""
        rows = np.asarray(rows, np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(self.columns):
            raise ValueError(f"{rows.shape} values for {len(self.columns)} characteristics")
        return np.stack([c.codes(rows[:, j], present) for j, c in enumerate(self.columns)],
                        axis=1) if self.columns else np.zeros((rows.shape[0], 0), np.int64)

    def points(self, rows: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        """(rows, characteristics) points of raw values; rows not `present` in missing slots."""
        codes = self.codes(rows, present)
        out = np.zeros(codes.shape)
        for j in range(len(self.columns)):
            out[:, j] = self.slot_points(j)[codes[:, j]]
        return out

    def partial_logits(self, rows: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        """This party's logit part: −(Σ points)/factor, plus the bank's intercept."""
        logits: np.ndarray = -self.points(rows, present).sum(axis=1) / self.factor
        return logits + (self.intercept if self.role == "label" else 0.0)

    def max_points(self) -> np.ndarray:
        """Per characteristic, the most points any row can get."""
        return np.asarray([float(self.slot_points(j)[_reachable(c, self.role)].max())
                           for j, c in enumerate(self.columns)])

    def total_range(self) -> tuple[float, float]:
        """(min, max) of this party's total points over its characteristics."""
        low = sum(float(self.slot_points(j)[_reachable(c, self.role)].min())
                  for j, c in enumerate(self.columns))
        return low, float(self.max_points().sum())

    def tables(self, edges: bool = True) -> list[dict[str, Any]]:
        """Per characteristic: β and a row per bin (label, WOE, points). Own party's view."""
        out = []
        for j, column in enumerate(self.columns):
            assert column.woe is not None
            pts = self.slot_points(j)
            rows = []
            for b in range(column.value_bins):
                if edges:
                    lo = "-inf" if b == 0 else f"{column.edges[b - 1]:.6g}"
                    hi = "inf" if b == column.edges.size else f"{column.edges[b]:.6g}"
                    label = f"[{lo}, {hi})"
                else:
                    label = f"bin {b}"
                rows.append({"bin": label, "woe": float(column.woe[b]), "points": float(pts[b])})
            for label, slot in _extra_slots(column, self.role):
                rows.append({"bin": label, "woe": float(column.woe[slot]),
                             "points": float(pts[slot])})
            out.append({"characteristic": column.name, "beta": float(self.beta[j]),
                        "max_points": float(pts[_reachable(column, self.role)].max()),
                        "bins": rows})
        return out

    def to_json(self, extra: dict[str, Any] | None = None) -> str:
        return json.dumps({"schema": MODEL_SCHEMA, "kind": KIND, "party": self.party,
                           "role": self.role, "job": self.job, "binning_job": self.binning_job,
                           "columns": [c.to_json() for c in self.columns],
                           "beta": self.beta.tolist(), "mean": self.mean.tolist(),
                           "intercept": self.intercept, "factor": self.factor,
                           "offset": self.offset, "base_points": self.base_points,
                           "points": self.tables(), **(extra or {})})

    @classmethod
    def from_json(cls, text: str, source: str = "scorecard") -> tuple[PartyCard, dict[str, Any]]:
        """A saved part and the whole document (the bank's holds the nodes' point ranges)."""
        try:
            raw: dict[str, Any] = json.loads(text)
        except ValueError as err:
            raise ModelFormatError(f"{source}: not a scorecard file ({err})") from err
        if raw.get("schema") != MODEL_SCHEMA or raw.get("kind") != KIND:
            raise ModelFormatError(f"{source}: a {raw.get('kind')!r} file of schema "
                                   f"{raw.get('schema')!r}; this version reads {KIND} schema "
                                   f"{MODEL_SCHEMA}: retrain it")
        card = cls(party=raw["party"], role=raw["role"], job=raw["job"],
                   binning_job=raw["binning_job"],
                   columns=tuple(ColumnBins.from_json(c) for c in raw["columns"]),
                   beta=np.asarray(raw["beta"], np.float64),
                   mean=np.asarray(raw["mean"], np.float64),
                   intercept=float(raw["intercept"]), factor=float(raw["factor"]),
                   offset=float(raw["offset"]))
        return card, raw


def reason_shortfalls(own_points: np.ndarray, own_max: np.ndarray, joint_points: np.ndarray,
                      joint_max: float) -> np.ndarray:
    """(rows, own characteristics + 1) points lost against each characteristic's maximum, the
    last column being the feature nodes' data together; all but each row's `MAX_REASONS`
    largest positive shortfalls are zeroed (a reason is a positive weight)."""
    lost = np.hstack([np.asarray(own_max)[None, :] - own_points,
                      (joint_max - np.asarray(joint_points, np.float64))[:, None]])
    lost = np.where(lost > 1e-9, lost, 0.0)
    if lost.shape[1] > MAX_REASONS:
        cut = -np.sort(-lost, axis=1)[:, MAX_REASONS - 1: MAX_REASONS]
        order = np.argsort(-lost, axis=1, kind="stable")
        keep = np.zeros(lost.shape, bool)
        np.put_along_axis(keep, order[:, :MAX_REASONS], True, axis=1)
        lost = np.where(keep & (lost >= cut), lost, 0.0)
    return lost


def reason_names(own: Sequence[str]) -> tuple[str, ...]:
    return (*own, JOINT)

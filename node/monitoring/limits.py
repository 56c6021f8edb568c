"""A feature node's own early-warning limits (its `[monitoring]` config) and the levels they give.

Each limit watches one column of the node's table: the move of an enterprise's current value
against its value in the node's reference snapshot, relative (`(now - then) / |then|`) or
absolute (`now - then`), in one direction ("down": a fall, "up": a rise, "both"), with the move
at which it turns yellow, orange and red. An enterprise's level is the worst any limit reaches:
0 none, 1 yellow, 2 orange, 3 red. An enterprise missing from either snapshot, a missing value,
or a relative move from 0 to 0 reaches none. Pure and vectorised: no id, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.errors import DataValidationError

LEVELS = ("none", "yellow", "orange", "red")
"""Level names by number: what a bank sees of an aggregate (capped at red)."""


class Limit(BaseModel):
    """One watched column (`[[monitoring.limits]]`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str = Field(min_length=1)
    change: Literal["relative", "absolute"] = "relative"
    direction: Literal["down", "up", "both"] = "down"
    yellow: float = Field(gt=0, allow_inf_nan=False)
    orange: float = Field(gt=0, allow_inf_nan=False)
    red: float = Field(gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> Limit:
        if not self.yellow <= self.orange <= self.red:
            raise ValueError(f"limits of {self.column!r} must rise from yellow to red "
                             f"(yellow {self.yellow}, orange {self.orange}, red {self.red})")
        return self


class MonitoringConfig(BaseModel):
    """Feature node: the limits it sets itself for early warning (the `[monitoring]` table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limits: list[Limit] = Field(default_factory=list)
    """Watched columns; none: this node raises no data alert (it still answers level 0)."""
    psi_bins: int = Field(default=10, ge=2, le=100)
    """Quantile bins of each feature's PSI (reference snapshot against the current one)."""

    @model_validator(mode="after")
    def _distinct(self) -> MonitoringConfig:
        names = [limit.column for limit in self.limits]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"columns watched by more than one limit: {', '.join(twice)}")
        return self

    def check_columns(self, features: Sequence[str], party: str) -> None:
        """Refuse limits on columns this node's table does not have, naming them."""
        unknown = [limit.column for limit in self.limits if limit.column not in features]
        if unknown:
            raise DataValidationError(
                f"[monitoring] limits of {party} name column(s) its table does not have: "
                f"{', '.join(unknown)} (columns: {', '.join(features)})")


def moves(limit: Limit, then: np.ndarray, now: np.ndarray) -> np.ndarray:
    """The move of each value in the limit's direction (positive: towards an alert; NaN: none)."""
    move: np.ndarray
    with np.errstate(divide="ignore", invalid="ignore"):
        move = np.asarray(now - then, dtype=float)
        if limit.change == "relative":
            move = move / np.abs(then)
    if limit.direction == "down":
        move = -move
    elif limit.direction == "both":
        move = np.abs(move)
    return move


def column_levels(limit: Limit, then: np.ndarray, now: np.ndarray) -> np.ndarray:
    """0 to 3 per value: the thresholds of `limit` the move reaches."""
    move = moves(limit, then, now)
    with np.errstate(invalid="ignore"):
        reached = ((move >= limit.yellow).astype(np.int8) + (move >= limit.orange)
                   + (move >= limit.red))
    return reached.astype(np.int8)


def levels(config: MonitoringConfig, features: Sequence[str], then: np.ndarray,
           now: np.ndarray) -> np.ndarray:
    """The worst level per row over every limit; `then` and `now` are (rows × features) with
    the same rows (NaN where the reference had no such enterprise)."""
    out = np.zeros(now.shape[0], dtype=np.int8)
    for limit in config.limits:
        j = list(features).index(limit.column)
        out = np.maximum(out, column_levels(limit, then[:, j], now[:, j]))
    return out


def level_name(aggregate: int) -> str:
    """The name of an aggregate level (a sum over nodes), capped at red."""
    return LEVELS[min(max(int(aggregate), 0), len(LEVELS) - 1)]

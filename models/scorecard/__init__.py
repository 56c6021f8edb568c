"""WOE scorecard: a label-private vertical LR on each party's WOE columns, turned into points.

A scorecard job reuses vertical LR (`models/vlr/`) step for step: the same roles, arbiter, driver
and privacy contract (DESIGN §4.2), on inputs that each party derives from its own part of a
finished binning job (`models/binning/`): the bank WOE-encodes its own selected characteristics
with its own bins; a feature node WOE-encodes its selected columns with the bins and WOE it kept
(`share_woe`); rows a feature node does not hold fall into its missing slot, as in binning. Only
`finish` and `metrics` differ (`algorithm.py`): each party turns its final weights into its own
points table and keeps it; a feature node sends the bank only the minimum and maximum total of its
points (model metadata, for reason codes).

Points (`points.py`), with factor = PDO / ln 2 and offset = base − factor·ln(odds) from the scale:
  points of bin b of characteristic j = −factor · β_j · (WOE_jb − μ_j),   β_j = w_j / σ_j
  base points (the bank's)            = offset − factor · intercept
where w_j, σ_j, μ_j are the weight, scale and mean of the standardised WOE column (vertical LR
standardises each party's inputs on its own training rows). Each party's points sum to −factor
times its own partial logit, so base + Σ points = offset − factor·logit: the policy score of the
PD. The centring −μ_j keeps each party's constant inside its own table (the bank never needs it).

Reason codes (`points.py`, `scoring.py`): adverse-action style, at most four, the characteristics
that cost the enterprise the most points against their maximum. DESIGN §5 forbids the bank any
single feature node's partial score or raw values, so the bank ranks its own characteristics one
by one and all feature nodes' data together as one pseudo-characteristic, "joint business data",
whose shortfall is Σ_F max_F − Σ_F points_F: Σ_F points_F = −factor·Σ_F u_F is what joint scoring
already gives the bank, Σ_F max_F is model metadata each node sent at the end of training. The
bank never learns which node or which of a node's characteristics cost the points.

What else each party learns beyond vertical LR: the job's settings name the characteristics
(every party and the coordinator see them, as they see the IV table of the binning job); each
node's min/max total points reach the bank. Feature nodes never see a label.
"""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from models.vlr import VlrConfig

JOINT = "joint business data"  # the feature nodes' data as one reason-code characteristic
MAX_REASONS = 4  # adverse-action style: at most four reasons


class ScorecardConfig(VlrConfig):
    """The `[scorecard]` table of a job file: vertical LR's settings, the binning job whose bins
    and WOE each party uses, the characteristics (`party:column`, all selected by that job) and
    the points scale (set it to the bank's policy `[scale]`). Without characteristics the
    coordinator fills in every one the binning job selected of the job's parties."""

    binning_job: str = Field(min_length=1)
    characteristics: list[str] = []  # empty: every one the binning job selected (`prepare`)
    base_points: float = 600.0
    base_odds: float = Field(default=50.0, gt=0)
    pdo: float = Field(default=20.0, gt=0)

    @model_validator(mode="after")
    def _named(self) -> ScorecardConfig:
        bad = [c for c in self.characteristics if c.count(":") < 1 or c.startswith(":")
               or c.endswith(":")]
        if bad:
            raise ValueError(f"characteristics are named party:column; not {bad}")
        if len(set(self.characteristics)) != len(self.characteristics):
            raise ValueError("a characteristic is listed twice")
        if not math.isfinite(self.base_points):
            raise ValueError("base_points must be finite")
        return self

    def of(self, party: str) -> list[str]:
        """The columns of `party` in the scorecard, in the listed order."""
        return [c.split(":", 1)[1] for c in self.characteristics if c.split(":", 1)[0] == party]

    @property
    def factor(self) -> float:
        return self.pdo / math.log(2)

    @property
    def offset(self) -> float:
        return self.base_points - self.factor * math.log(self.base_odds)


__all__ = ["JOINT", "MAX_REASONS", "ScorecardConfig"]

"""The bank's credit policy (TOML): probability of default → score → grade → credit line, its
admission strategy (`[strategy]`, node.decisions.strategy) and its portfolio monitoring
(`[monitoring]`: early-warning tiers, dynamic line bounds, re-credit)."""

from __future__ import annotations

import itertools
import math
import tomllib
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError, model_validator

from common.errors import DataValidationError
from node.decisions.strategy import Strategy, parse_strategy
from node.monitoring.limits import LEVELS

NEVER = len(LEVELS)
"""A data level no aggregate reaches (levels are capped at red)."""
_LEVEL_OF = {name: k for k, name in enumerate(LEVELS)}


class ScoreScale(BaseModel):
    """Points: `base_points` at good:bad odds `base_odds`, +`points_to_double_odds` per doubling."""

    base_points: float = 600.0
    base_odds: float = Field(default=50.0, gt=0)
    points_to_double_odds: float = Field(default=20.0, gt=0)


class Grade(BaseModel):
    """Scores at or above `min_score` (and below the next grade's) get this grade."""

    grade: str
    min_score: float
    line_multiple: float = Field(ge=0)
    max_line: float = Field(ge=0)


class CreditLine(BaseModel):
    """Line = min(max_line, line_multiple × 10^basis) from the bank's own column `basis_column`
    (a log10 amount); an enterprise without it gets `floor` at most."""

    basis_column: str = "deposit_balance_log"
    basis_is_log10: bool = True
    floor: float = Field(default=0.0, ge=0)


class AlertTier(BaseModel):
    """An early-warning tier: reached when any of its criteria holds (the worst tier wins)."""

    model_config = {"extra": "forbid"}

    tier: str
    action: str
    """What the bank does: freeze_drawdowns, cut_line, call_margin (the bank's own names)."""
    pd_above: float = Field(default=1.0, gt=0, le=1)
    """Re-scored PD at or above this."""
    pd_ratio: float = Field(default=float("inf"), gt=1)
    """Re-scored PD at least this many times the PD at booking."""
    grade_drop: int = Field(default=99, ge=1)
    """Grades lost since booking (A → C is 2)."""
    data_level: Literal["yellow", "orange", "red", "never"] | None = None
    """The feature nodes' aggregate data-alert level (`node.scoring.data_alerts`) at or above
    which an account reaches this tier; "never": data alerts do not reach it. Unset: by the
    tier's place (the first tier yellow, the second orange, the third red, later ones never)."""


class Monitoring(BaseModel):
    """Post-loan monitoring: tiers from mild to severe, line bounds, re-credit horizon. An
    account's tier is the worse of the tier its score reaches and the tier the feature nodes'
    aggregate data level reaches (`AlertTier.data_level`)."""

    model_config = {"extra": "forbid"}

    tiers: list[AlertTier] = Field(default_factory=lambda: [
        AlertTier(tier="yellow", action="freeze_drawdowns", pd_above=0.12, pd_ratio=2.0,
                  grade_drop=1),
        AlertTier(tier="orange", action="cut_line", pd_above=0.2, pd_ratio=3.0, grade_drop=2),
        AlertTier(tier="red", action="call_margin", pd_above=0.35, pd_ratio=5.0, grade_drop=3),
    ])
    min_pd_rise: float = Field(default=0.02, ge=0)
    """A PD criterion needs the PD to have risen by at least this much since booking too."""
    max_raise: float = Field(default=0.5, ge=0)
    """A line rises at most by this share per review (improving grade, no alert)."""
    max_cut: float = Field(default=1.0, ge=0, le=1)
    """A line falls at most by this share per review."""
    cut_on: str = "orange"
    """From this tier up, the line is cut to the new grade's line (and never below drawn)."""
    data_cut: float = Field(default=1.0, ge=0, le=1)
    """When the data-alert level reaches a tier from `cut_on` up, the line is cut by this share
    of its undrawn part too (the lower of the two cuts; a grade may not have moved yet)."""
    recredit_days: int = Field(default=30, ge=0)
    """Lines expiring within this many days are re-credited at the review."""
    term_days: int = Field(default=365, ge=1)

    @model_validator(mode="after")
    def _cut_tier_known(self) -> Monitoring:
        if self.cut_on not in [t.tier for t in self.tiers]:
            raise ValueError(f"cut_on {self.cut_on!r} is not one of the tiers")
        reached = [(k, level) for k, level in enumerate(self.data_levels()) if level < NEVER]
        for (j, low), (k, high) in itertools.pairwise(reached):
            if high <= low:
                raise ValueError(
                    f"monitoring.tiers[{k}].data_level ({self.tiers[k].tier}: "
                    f"{LEVELS[high]!r}) must be above the data level of the milder tier "
                    f"monitoring.tiers[{j}] ({self.tiers[j].tier}: {LEVELS[low]!r})")
        return self

    def data_levels(self) -> list[int]:
        """Per tier, the aggregate data level (1 yellow … 3 red) reaching it; NEVER: none."""
        return [_LEVEL_OF.get(t.data_level, NEVER) if t.data_level is not None
                else k + 1 if k + 1 < len(LEVELS) else NEVER
                for k, t in enumerate(self.tiers)]


class CreditPolicy(BaseModel):
    """A bank's whole policy; grades sorted best first."""

    model_config = {"extra": "forbid"}

    version: str = ""
    """The bank's name for this policy (recorded with each decision beside a digest)."""
    scale: ScoreScale = ScoreScale()
    grades: list[Grade] = Field(default_factory=lambda: [
        Grade(grade="A", min_score=600, line_multiple=3.0, max_line=5_000_000),  # PD < ~2%
        Grade(grade="B", min_score=570, line_multiple=2.0, max_line=2_000_000),  # < ~5%
        Grade(grade="C", min_score=550, line_multiple=1.0, max_line=800_000),  # < ~10%
        Grade(grade="D", min_score=530, line_multiple=0.3, max_line=200_000),  # < ~18%
        Grade(grade="E", min_score=-math.inf, line_multiple=0.0, max_line=0.0),
    ])
    credit_line: CreditLine = CreditLine()
    reason_codes: int = Field(default=3, ge=0, le=10)
    strategy: Strategy = Strategy()
    monitoring: Monitoring = Monitoring()

    @model_validator(mode="after")
    def _grades_descend(self) -> CreditPolicy:
        scores = [g.min_score for g in self.grades]
        if not scores or scores != sorted(scores, reverse=True) or len(set(scores)) != len(scores):
            raise ValueError("grades must be listed best first with strictly falling min_score")
        unknown = self.strategy.grade_names() - {g.grade for g in self.grades}
        if unknown:
            raise ValueError(f"strategy names grades the policy lacks: {sorted(unknown)}")
        return self

    def scores(self, pd: np.ndarray) -> np.ndarray:
        s = self.scale
        factor = s.points_to_double_odds / math.log(2)
        offset = s.base_points - factor * math.log(s.base_odds)
        p = np.clip(pd, 1e-12, 1 - 1e-12)
        out: np.ndarray = offset + factor * np.log((1 - p) / p)
        return out

    def grade_index(self, scores: np.ndarray) -> np.ndarray:
        """Index into `grades` for each score."""
        mins = np.asarray([g.min_score for g in self.grades])
        index: np.ndarray = np.argmax(scores[:, None] >= mins[None, :], axis=1)
        return index

    def lines(self, grade_index: np.ndarray, basis: np.ndarray) -> np.ndarray:
        multiple = np.asarray([g.line_multiple for g in self.grades])[grade_index]
        cap = np.asarray([g.max_line for g in self.grades])[grade_index]
        amount = 10.0 ** basis if self.credit_line.basis_is_log10 else basis
        line = np.where(np.isnan(amount), np.minimum(self.credit_line.floor, cap),
                        np.minimum(cap, multiple * np.nan_to_num(amount)))
        out: np.ndarray = np.round(line, -3)
        return out


def load_policy(path: Path | None) -> CreditPolicy:
    """The policy file, or the default policy when no file is given."""
    if path is None:
        return CreditPolicy()
    try:
        data = tomllib.loads(Path(path).read_text())
        if isinstance(data.get("strategy"), dict):  # its errors name the rule and field
            data["strategy"] = parse_strategy(data["strategy"], f"{path} [strategy]")
        return CreditPolicy.model_validate(data)
    except OSError as err:
        raise DataValidationError(f"{path}: cannot read the policy: {err.strerror}") from err
    except (tomllib.TOMLDecodeError, ValidationError) as err:
        raise DataValidationError(f"{path}: invalid credit policy: {err}") from err

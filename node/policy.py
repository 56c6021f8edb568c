"""The bank's credit policy (TOML): probability of default → score → grade → credit line."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field, ValidationError, model_validator

from common.errors import DataValidationError


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

    @model_validator(mode="after")
    def _grades_descend(self) -> CreditPolicy:
        scores = [g.min_score for g in self.grades]
        if not scores or scores != sorted(scores, reverse=True) or len(set(scores)) != len(scores):
            raise ValueError("grades must be listed best first with strictly falling min_score")
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
        return CreditPolicy.model_validate(tomllib.loads(Path(path).read_text()))
    except OSError as err:
        raise DataValidationError(f"{path}: cannot read the policy: {err.strerror}") from err
    except (tomllib.TOMLDecodeError, ValidationError) as err:
        raise DataValidationError(f"{path}: invalid credit policy: {err}") from err

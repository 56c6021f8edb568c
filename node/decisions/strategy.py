"""Admission strategies (TOML): hard rules per segment, knock-out / refer / approve, line rules.

A strategy is declarative: segments are conditions on the bank's own fields; rules are
conditions on those fields and on the joint result (`pd`, `score`, `grade`), each with an
outcome; line rules scale and cap the policy's line per segment. Evaluation is vectorised over
a batch of applicants (`facts`: one array per field, NaN for missing), so the decision service,
a portfolio review and a dry-run over stored decisions all use the same code. On `grade` the
order is quality: `grade >= "B"` means B or better. Outcome precedence: knock_out, then refer,
then approve; an applicant no rule hits gets `default_outcome`.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common.errors import DataValidationError

Outcome = Literal["approve", "refer", "knock_out"]
OUTCOMES: tuple[Outcome, ...] = ("approve", "refer", "knock_out")  # by rising precedence
JOINT_FIELDS = ("pd", "score", "grade")
Op = Literal["<", "<=", ">", ">=", "==", "!=", "in", "not_in", "missing", "present"]


class Condition(BaseModel):
    """`field op value`; `missing`/`present` take no value, `in`/`not_in` take a list."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(min_length=1)
    op: Op
    value: float | str | list[float | str] | None = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> Condition:
        if self.op in ("missing", "present"):
            if self.value is not None:
                raise ValueError(f"op {self.op!r} takes no value")
        elif self.op in ("in", "not_in"):
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"op {self.op!r} needs a non-empty list value")
        elif self.value is None or isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} needs one value")
        values = self.value if isinstance(self.value, list) else [self.value]
        for value in values:
            if (self.field == "grade") != isinstance(value, str):
                raise ValueError(f"field {self.field!r} takes " + (
                    "a grade name" if self.field == "grade" else "numbers") + f", not {value!r}")
        return self


class Segment(BaseModel):
    """A named part of the applicants: all its conditions hold (first matching segment wins)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    when: list[Condition] = Field(default_factory=list)


class Rule(BaseModel):
    """A hard rule: when all its conditions hold for an applicant of its segments, `outcome`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    outcome: Outcome
    segments: list[str] = Field(default_factory=list)
    """Segments it applies to; empty: every applicant."""
    when: list[Condition] = Field(min_length=1)


class LineRule(BaseModel):
    """Line for a segment: clip(factor × policy line + add, floor, cap)."""

    model_config = ConfigDict(extra="forbid")

    segment: str
    factor: float = Field(default=1.0, ge=0)
    add: float = 0.0
    floor: float = Field(default=0.0, ge=0)
    cap: float = Field(default=float("inf"), ge=0)


class Strategy(BaseModel):
    """A whole admission strategy."""

    model_config = ConfigDict(extra="forbid")

    version: str = ""
    default_outcome: Outcome = "approve"
    segments: list[Segment] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    lines: list[LineRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_resolve(self) -> Strategy:
        names = [s.name for s in self.segments]
        if len(set(names)) != len(names):
            raise ValueError("segment names must be unique")
        rules = [r.name for r in self.rules]
        if len(set(rules)) != len(rules):
            raise ValueError("rule names must be unique")
        known = {*names, "other"}
        for k, rule in enumerate(self.rules):
            for seg in rule.segments:
                if seg not in known:
                    raise ValueError(f"rules[{k}] ({rule.name}): unknown segment {seg!r}")
        for k, line in enumerate(self.lines):
            if line.segment not in known:
                raise ValueError(f"lines[{k}]: unknown segment {line.segment!r}")
        return self

    def digest(self) -> str:
        """The strategy's version: its stated one with a digest of everything in it."""
        digest = hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]
        return f"{self.version}#{digest}" if self.version else f"sha256:{digest}"

    def grade_names(self) -> set[str]:
        """Every grade a condition names."""
        conditions = [c for s in self.segments for c in s.when] + \
                     [c for r in self.rules for c in r.when]
        return {str(v) for c in conditions if c.field == "grade" and c.value is not None
                for v in (c.value if isinstance(c.value, list) else [c.value])}

    def fields(self) -> set[str]:
        """Every field a condition names."""
        conditions = [c for s in self.segments for c in s.when] + \
                     [c for r in self.rules for c in r.when]
        return {c.field for c in conditions}


@dataclass(frozen=True)
class Admission:
    """The strategy's answer for a batch: one entry per applicant."""

    segment: list[str]
    outcome: list[Outcome]
    rules_hit: list[list[str]]
    line: np.ndarray


def grade_rank(grades: list[str], names: list[str | None]) -> np.ndarray:
    """Quality of each grade as a number (higher is better; NaN for no grade)."""
    rank = {g: float(len(grades) - k) for k, g in enumerate(grades)}
    return np.asarray([rank.get(n, np.nan) if n is not None else np.nan for n in names])


def _holds(cond: Condition, facts: dict[str, np.ndarray], grades: list[str], n: int,
           ) -> np.ndarray:
    values = facts.get(cond.field)
    if values is None:
        values = np.full(n, np.nan)
    missing = np.isnan(values)
    if cond.op in ("missing", "present"):
        found: np.ndarray = missing if cond.op == "missing" else ~missing
        return found

    def number(v: float | str) -> float:
        return float(grade_rank(grades, [str(v)])[0]) if cond.field == "grade" else float(v)

    if cond.op in ("in", "not_in"):
        targets = [number(v) for v in cond.value]  # type: ignore[union-attr]
        inside = np.isin(values, targets)
        return inside if cond.op == "in" else ~inside & ~missing
    target = number(cond.value)  # type: ignore[arg-type]
    with np.errstate(invalid="ignore"):
        result = {"<": values < target, "<=": values <= target, ">": values > target,
                  ">=": values >= target, "==": values == target,
                  "!=": values != target}[cond.op]
    out: np.ndarray = result & ~missing
    return out


def evaluate(strategy: Strategy, facts: dict[str, np.ndarray], grades: list[str],
             policy_line: np.ndarray) -> Admission:
    """Segments, outcomes, rules hit and lines for a batch. `facts` holds each field as floats
    (NaN: missing), `grade` as `grade_rank`; `policy_line` is the policy's line (NaN: none)."""
    n = len(policy_line)
    segment = np.full(n, "other", dtype=object)
    unset = np.ones(n, dtype=bool)
    for seg in strategy.segments:
        inside = np.ones(n, dtype=bool)
        for cond in seg.when:
            inside &= _holds(cond, facts, grades, n)
        segment[unset & inside] = seg.name
        unset &= ~inside
    level = np.full(n, -1)
    hits = np.zeros((n, len(strategy.rules)), dtype=bool)
    for k, rule in enumerate(strategy.rules):
        hit = np.ones(n, dtype=bool) if not rule.segments else np.isin(segment, rule.segments)
        for cond in rule.when:
            hit &= _holds(cond, facts, grades, n)
        hits[:, k] = hit
        level = np.where(hit, np.maximum(level, OUTCOMES.index(rule.outcome)), level)
    level = np.where(level < 0, OUTCOMES.index(strategy.default_outcome), level)
    line = np.nan_to_num(np.asarray(policy_line, dtype=float))
    for rule_line in strategy.lines:
        inside = segment == rule_line.segment
        shaped = np.clip(rule_line.factor * line + rule_line.add, rule_line.floor, rule_line.cap)
        line = np.where(inside, shaped, line)
    line = np.where(level == OUTCOMES.index("knock_out"), 0.0, np.round(line, -3))
    names = [r.name for r in strategy.rules]
    return Admission(segment=[str(s) for s in segment],
                     outcome=[OUTCOMES[v] for v in level],
                     rules_hit=[[names[k] for k in np.flatnonzero(row)] for row in hits],
                     line=line)


def _where(err: ValidationError, data: dict[str, Any]) -> str:
    """Each error as `rule NAME, field a.b: message`."""
    parts = []
    for e in err.errors():
        loc = [str(x) for x in e["loc"]]
        label = ".".join(loc)
        if len(loc) >= 2 and loc[0] in ("rules", "segments") and loc[1].isdigit():
            items = data.get(loc[0], [])
            index = int(loc[1])
            name = items[index].get("name", "?") if index < len(items) and isinstance(
                items[index], dict) else "?"
            label = f"{loc[0][:-1]} {name!r} ({loc[0]}[{index}]), field {'.'.join(loc[2:])}"
        parts.append(f"{label}: {e['msg']}")
    return "; ".join(parts)


def parse_strategy(data: dict[str, Any], source: str) -> Strategy:
    """A strategy from decoded TOML; errors name the source, the rule and the field."""
    try:
        return Strategy.model_validate(data)
    except ValidationError as err:
        raise DataValidationError(f"{source}: invalid strategy: {_where(err, data)}") from err


def load_strategy(path: Path) -> Strategy:
    """A strategy file (its top level, or its `[strategy]` table when it is a policy file)."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as err:
        raise DataValidationError(f"{path}: cannot read the strategy: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise DataValidationError(f"{path}: invalid strategy TOML: {err}") from err
    return parse_strategy(data.get("strategy", data), str(path))

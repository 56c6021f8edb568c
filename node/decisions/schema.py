"""What the bank's loan systems send the decision service and what it answers (pydantic)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from common.errors import DataValidationError

FiniteNumber = Annotated[float, Field(allow_inf_nan=False)]
Text = Annotated[str, Field(min_length=1, max_length=128)]


class FieldError(DataValidationError):
    """A request field the service refuses (HTTP 422): `loc` names it as pydantic would."""

    def __init__(self, loc: tuple[str, ...], message: str) -> None:
        super().__init__(f"{'.'.join(loc)}: {message}")
        self.loc = loc
        self.message = message


class ConsentIn(BaseModel):
    """The enterprise's consent as the loan system holds it: its reference and expiry."""

    model_config = ConfigDict(extra="forbid")

    reference: Text
    expires_at: AwareDatetime


class DecisionRequest(BaseModel):
    """One enterprise to decide on, with optional bank-side values over (or instead of) the
    bank's table row: one number (or null for missing) per model feature."""

    model_config = ConfigDict(extra="forbid")

    enterprise_id: Text
    consent: ConsentIn
    purpose: Text = "credit assessment"
    features: dict[str, FiniteNumber | None] | None = None


class ModelRef(BaseModel):
    model_id: str
    model_job: str
    algorithm: str


class Inputs(BaseModel):
    """The bank-side values the decision used, and where each came from."""

    features: dict[str, float | None]
    sources: dict[str, Literal["request", "table", "none"]]


class AdmissionOut(BaseModel):
    """The admission strategy's verdict: outcome, segment, rules hit, the policy's line before
    the strategy shaped it, and the facts it read (to replay a strategy change later)."""

    outcome: Literal["approve", "refer", "knock_out"]
    segment: str
    rules_hit: list[str]
    strategy_version: str
    policy_line: float | None
    facts: dict[str, float | None]


class DecisionOut(BaseModel):
    """One decision, as answered and as stored."""

    decision_id: str
    enterprise_id: str
    outcome: Literal["decided", "refer", "refused"]
    pd: float | None
    score: float | None
    grade: str | None
    credit_line: float | None
    reason_codes: list[str]
    reason: str
    parties_covering: int
    model: ModelRef
    policy_version: str
    purpose: str
    consent: dict[str, str]
    inputs: Inputs
    created_at: dt.datetime
    elapsed_ms: float
    snapshots: dict[str, str] = {}
    """The data snapshot version each party's part came from (the bank's table, each feature
    node that answered); empty in records made before live data."""
    admission: AdmissionOut | None = None
    """None when the network gave no grade (outcome refer or refused)."""

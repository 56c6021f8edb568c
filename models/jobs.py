"""A training job file's schema (shared by the CLI and the coordinator) and how it is read."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import DataValidationError, describe_validation
from models.protocol import Algorithm


class TrainingJob(BaseModel):
    """What every training job file names besides its algorithm's table (`[vlr]`, `[sbt]`)."""

    model_config = ConfigDict(extra="forbid")

    label: str
    features: list[str] = Field(min_length=1)
    align_job: str
    model_name: str = ""
    step_deadline_seconds: float | None = None  # default: the algorithm's
    step_attempts: int = Field(default=3, ge=1)


def parse_job(algo: Algorithm, raw: dict[str, Any]) -> tuple[TrainingJob, BaseModel]:
    """The job and its algorithm's settings, or a DataValidationError naming each bad key."""
    raw = dict(raw)
    raw.pop("operator", None)
    section = raw.pop(algo.name, None) or {}
    try:
        job = TrainingJob.model_validate(raw)
    except ValidationError as err:
        raise DataValidationError(describe_validation(err, "training job")) from err
    try:
        settings = algo.settings.model_validate(section)
    except ValidationError as err:
        raise DataValidationError(describe_validation(err, f"[{algo.name}]")) from err
    return job, settings


def job_record(algo: Algorithm, job: TrainingJob, settings: BaseModel) -> dict[str, Any]:
    """How a job is stored (and read back by `parse_job` on resume)."""
    return {**job.model_dump(), algo.name: settings.model_dump(mode="json")}

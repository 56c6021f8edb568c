"""What a node trained a model with: `models/<job>/job.json` beside its part of the model.

Written when the node stores its model: the algorithm, the parties, the alignment and the
settings as this node applied them (after its floors). The bank reads it back to know which of
its rows validated the model (`fedcredit report`); it holds no data, key or id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from common.errors import DataValidationError, ModelFormatError, describe_validation
from common.files import atomic_write
from node.alignment import check_job_id

JOB_RECORD = "job.json"
JOB_RECORD_SCHEMA = 1


class JobRecord(BaseModel):
    """One finished training job as this node saw it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = JOB_RECORD_SCHEMA
    job: str
    algorithm: str
    label: str
    features: list[str]
    align_job: str
    settings: dict[str, Any]


def record_path(state_dir: Path, job: str) -> Path:
    return state_dir / "models" / check_job_id(job) / JOB_RECORD


def save_job_record(state_dir: Path, record: JobRecord) -> None:
    atomic_write(record_path(state_dir, record.job),
                 (record.model_dump_json(indent=2) + "\n").encode())


def load_job_record(state_dir: Path, job: str) -> JobRecord:
    """The record of `job`, or an error saying it is missing (a model trained before records)
    or unreadable."""
    path = record_path(state_dir, job)
    if not path.exists():
        raise DataValidationError(f"{path} is missing: job {job} was trained before nodes kept "
                                  "a record of their jobs; name the rows to validate on")
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataValidationError(f"{path}: unreadable job record ({err})") from err
    if raw.get("schema_version") != JOB_RECORD_SCHEMA:
        raise ModelFormatError(f"{path}: job record schema {raw.get('schema_version')!r}, this "
                               f"version reads {JOB_RECORD_SCHEMA}")
    try:
        return JobRecord.model_validate(raw)
    except ValidationError as err:
        raise DataValidationError(describe_validation(err, str(path))) from err

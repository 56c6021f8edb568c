"""The record a node keeps of a finished job: written whole, read back, refused when unknown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.errors import DataValidationError, ModelFormatError
from node.job_record import JobRecord, load_job_record, record_path, save_job_record


def _record() -> JobRecord:
    return JobRecord(job="job-1", algorithm="vlr", label="bank", features=["core", "tax"],
                     align_job="al-1", settings={"seed": 7, "validation_fraction": 0.25})


def test_a_saved_record_reads_back_the_same(tmp_path: Path) -> None:
    save_job_record(tmp_path, _record())
    assert load_job_record(tmp_path, "job-1") == _record()
    assert record_path(tmp_path, "job-1") == tmp_path / "models" / "job-1" / "job.json"


def test_a_missing_record_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="name the rows to validate on"):
        load_job_record(tmp_path, "job-1")


def test_another_schema_or_a_bad_field_is_refused(tmp_path: Path) -> None:
    save_job_record(tmp_path, _record())
    path = record_path(tmp_path, "job-1")
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "schema_version": 99}))
    with pytest.raises(ModelFormatError, match="schema 99"):
        load_job_record(tmp_path, "job-1")
    path.write_text(json.dumps({**raw, "features": "core"}))
    with pytest.raises(DataValidationError, match="features"):
        load_job_record(tmp_path, "job-1")

"""The job id rule, one for the coordinator and every node (ids name folders in state dirs)."""

from __future__ import annotations

import re

from common.errors import FedcreditError, ProtocolError

_JOB_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
JOB_ID_RULE = "1-64 letters, digits, '_', '.' or '-'"


def valid_job_id(job_id: str) -> bool:
    """Whether `job_id` is 1-64 letters, digits, '_', '.' or '-' (and not '.' or '..')."""
    return bool(_JOB_RE.fullmatch(job_id)) and job_id not in (".", "..")


def check_job_id(job_id: str, error: type[FedcreditError] = ProtocolError) -> str:
    """`job_id`, or `error` (a peer's: ProtocolError; an operator's: DataValidationError)."""
    if not valid_job_id(job_id):
        raise error(f"job id {job_id!r} is not {JOB_ID_RULE}")
    return job_id

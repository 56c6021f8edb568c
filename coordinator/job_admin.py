"""The operator's job checks and chores: alignment a training job needs, show, delete."""

from __future__ import annotations

import json
from typing import Any

from common.errors import DataValidationError, ProtocolError
from coordinator.store import JobRecord, Store
from models.jobs import TrainingJob
from proto.fedcredit.v1 import coordinator_pb2

SECRET_WORDS = ("secret", "key", "token", "password", "credential")


def check_alignment(store: Store, job: TrainingJob) -> None:
    """`job.align_job` must be a done alignment of the job's label with every feature party."""
    name, parties = job.align_job, [job.label, *job.features]
    create = (f"`fedcredit align --label {job.label} "
              + " ".join(f"--feature {f}" for f in job.features) + " --job-id {id}`")
    found = store.job(name)
    if found is None:
        raise DataValidationError(f"align_job {name!r}: no such alignment job; create it with "
                                  + create.format(id=name))
    fresh = create.format(id="NEW-ID") + " and set align_job to it"
    if found.kind != "align":
        raise DataValidationError(f"align_job {name!r} is a {found.kind} job, not an "
                                  f"alignment; align with {fresh}")
    if found.state != "done":
        raise DataValidationError(f"alignment job {name!r} is {found.state}, not done; align "
                                  f"again with {fresh}")
    if found.config.get("mode", "PSI_MODE_FULL") != "PSI_MODE_FULL":
        raise DataValidationError(f"alignment job {name!r} is cardinality-only (sizes, no rows); "
                                  f"training needs a full alignment: align with {fresh}")
    if found.parties[:1] != [job.label]:
        raise DataValidationError(f"alignment job {name!r} aligned label party "
                                  f"{found.parties[0]!r}, not {job.label!r}; align with {fresh}")
    missing = [p for p in parties if p not in found.parties]
    if missing:
        raise DataValidationError(f"alignment job {name!r} did not align "
                                  f"{', '.join(missing)}; align with {fresh}")


def public_config(config: dict[str, Any]) -> dict[str, Any]:
    """A job's stored settings without anything named like a secret (at any depth)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if any(word in key.lower() for word in SECRET_WORDS):
            continue
        out[key] = public_config(value) if isinstance(value, dict) else value
    return out


def job_status(j: JobRecord, *, with_config: bool = False) -> coordinator_pb2.JobStatus:
    return coordinator_pb2.JobStatus(
        job_id=j.job_id, kind=j.kind, state=j.state, parties=j.parties,
        metrics_json=json.dumps(j.metrics), created_at_unix=int(j.created_at),
        updated_at_unix=int(j.updated_at), error=j.error,
        config_json=json.dumps(public_config(j.config)) if with_config else "")


def delete_job(store: Store, job_id: str, *, force: bool) -> coordinator_pb2.DeleteJobResponse:
    """Remove a job that is not running; one whose model is registered only with `force`
    (the model stays registered and scoring with it goes on)."""
    job = store.job(job_id)
    if job is None:
        raise ProtocolError(f"no job {job_id!r}")
    if job.state == "running":
        raise ProtocolError(f"job {job_id} is running; cancel it first "
                            f"(`fedcredit jobs cancel {job_id}`)")
    model = store.model_of_job(job_id)
    if model is not None and not force:
        raise ProtocolError(f"job {job_id} trained model {model.model_id}, which is registered; "
                            f"delete it anyway with --force (the model stays registered)")
    store.delete_job(job_id)
    return coordinator_pb2.DeleteJobResponse(job_id=job_id, kind=job.kind, state=job.state)

"""Training jobs at the coordinator: the job file's schema, and running a declared driver."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import DataValidationError, describe_validation
from coordinator.nodes import NodeClient
from coordinator.steps import NodeNetwork
from models.protocol import Algorithm, JobSpec

log = logging.getLogger(__name__)


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


def run_job(algo: Algorithm, job_id: str, job: TrainingJob, settings: BaseModel,
            label: NodeClient, features: list[NodeClient], *, resume: bool,
            on_epoch: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """Drive the job over the network to its end; every round's report goes to `on_epoch`."""
    spec = JobSpec(label=job.label, features=job.features, align_job=job.align_job,
                   settings=settings.model_dump(mode="json"))
    net = NodeNetwork(algo, job_id, spec, label, features,
                      deadline_s=job.step_deadline_seconds or algo.step_deadline_seconds,
                      attempts=job.step_attempts)
    reports: list[dict[str, Any]] = []
    try:
        started = time.perf_counter()
        for progress in algo.drive(net, settings, resume=resume):
            if progress.kind == "epoch":
                report = {**progress.report,
                          "seconds": round(time.perf_counter() - started, 3)}
                reports.append(report)
                on_epoch(report)
                log.info("job %s %s %s: loss %.5f auc %.4f", job_id, algo.unit,
                         report.get("epoch"), report["loss"], report["auc"])
            started = time.perf_counter()
        return reports
    finally:
        net.close()

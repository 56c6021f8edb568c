"""Running a training job at the coordinator: the algorithm's declared driver over gRPC."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from pydantic import BaseModel

from common.limits import WireLimits
from coordinator.nodes import NodeClient
from coordinator.steps import NodeNetwork, grpc_send
from models.jobs import TrainingJob
from models.protocol import Algorithm, JobSpec

log = logging.getLogger(__name__)


def run_job(algo: Algorithm, job_id: str, job: TrainingJob, settings: BaseModel,
            label: NodeClient, features: list[NodeClient], *, resume: bool,
            on_epoch: Callable[[dict[str, Any]], None],
            cancelled: Callable[[], bool] | None = None,
            limits: WireLimits | None = None,
            vault: MutableMapping[str, bytes] | None = None) -> list[dict[str, Any]]:
    """Drive the job over the network to its end; every round's report goes to `on_epoch`;
    `cancelled` is asked before each step (JobCancelled once it says so)."""
    spec = JobSpec(label=job.label, features=job.features, align_job=job.align_job,
                   settings=settings.model_dump(mode="json"))
    send = grpc_send([label, *features],
                     deadline_s=job.step_deadline_seconds or algo.step_deadline_seconds,
                     attempts=job.step_attempts, limits=limits)
    net = NodeNetwork(algo, job_id, spec, label, features, send, cancelled, vault)
    reports: list[dict[str, Any]] = []
    try:
        started = time.perf_counter()
        for progress in algo.drive(net, settings, resume=resume):
            if progress.kind == "final":  # figures computed once: they complete the last round
                reports[-1:] = [progress.report]
                on_epoch(progress.report)
            elif progress.kind == "epoch":
                report = {**progress.report,
                          "seconds": round(time.perf_counter() - started, 3)}
                reports.append(report)
                on_epoch(report)
                log.info("job %s %s %s: loss %s auc %s", job_id, algo.unit,
                         report.get("epoch"), report.get("loss"), report.get("auc"))
            started = time.perf_counter()
        return reports
    finally:
        net.close()

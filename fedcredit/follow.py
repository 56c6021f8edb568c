"""Follow a coordinator job to its end with a progress bar (the CLI's `train` and the demo)."""

from __future__ import annotations

import json
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from proto.fedcredit.v1 import coordinator_pb2, coordinator_pb2_grpc


def follow_job(stub: coordinator_pb2_grpc.CoordinatorServiceStub, job_id: str,
               max_epochs: int | None = None, quiet: bool = False,
               poll_s: float = 0.5, unit: str = "epoch",
               console: Console | None = None, *,
               runs_on: bool = True) -> coordinator_pb2.JobStatus:
    """Poll a job until it ends, showing loss and validation AUC per epoch.

    Ctrl-C stops following, not the job: it says so (with how to follow or cancel it, when the
    coordinator `runs_on` after we stop) on stderr and raises KeyboardInterrupt again.
    """
    try:
        return _follow(stub, job_id, max_epochs, quiet, poll_s, unit, console)
    except KeyboardInterrupt:
        notice = Console(stderr=True, emoji=False)
        if runs_on:
            notice.print(f"stopped following; job {job_id} continues at the coordinator. "
                         f"Follow it with `fedcredit jobs show {job_id}`, cancel it with "
                         f"`fedcredit jobs cancel {job_id}`.", highlight=False)
        else:
            notice.print(f"stopped following job {job_id}; it stops with this network.",
                         highlight=False)
        raise


def _follow(stub: coordinator_pb2_grpc.CoordinatorServiceStub, job_id: str,
            max_epochs: int | None, quiet: bool, poll_s: float, unit: str,
            console: Console | None) -> coordinator_pb2.JobStatus:
    job: coordinator_pb2.JobStatus
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                  console=console or Console(emoji=False), disable=quiet,
                  transient=False) as progress:
        task = progress.add_task(job_id, total=max_epochs, status="starting")
        while True:
            job = stub.GetJob(coordinator_pb2.GetJobRequest(job_id=job_id), timeout=30)
            metrics = json.loads(job.metrics_json or "{}")
            if "epoch" in metrics:
                ks = f"  KS {metrics['ks']:.3f}" if metrics.get("ks") is not None else ""
                auc = f"  AUC {metrics['auc']:.4f}" if metrics.get("auc") is not None else ""
                loss = (f"  loss {metrics['loss']:.4f}" if metrics.get("loss") is not None
                        else "")
                progress.update(task, completed=metrics["epoch"] + 1,
                                status=f"{unit} {metrics['epoch']}{loss}{auc}{ks}")
            if job.state != "running":
                progress.update(task, status=f"{job.state}: " + (
                    job.error or f"model {metrics.get('model_id', '')}"))
                return job
            time.sleep(poll_s)

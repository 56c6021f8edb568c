"""`fedcredit train ...`: launch training jobs at the coordinator and follow their progress."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from common.errors import DataValidationError, ProtocolError
from fedcredit.cli.operator import (
    DEFAULT_COORDINATOR,
    CoordinatorOpt,
    IdentityOpt,
    InsecureOpt,
    JsonOpt,
    PkiOpt,
    coordinator_stub,
)
from proto.fedcredit.v1 import coordinator_pb2, coordinator_pb2_grpc

train_app = typer.Typer(help="Launch training jobs.", no_args_is_help=True)
console = Console()


def read_job_file(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except OSError as err:
        raise DataValidationError(f"{path}: cannot read the job file: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise DataValidationError(f"{path}: not valid TOML: {err}") from err


def follow_job(stub: coordinator_pb2_grpc.CoordinatorServiceStub, job_id: str,
               max_epochs: int | None = None, quiet: bool = False,
               poll_s: float = 0.5, unit: str = "epoch") -> coordinator_pb2.JobStatus:
    """Poll a job until it ends, showing loss and validation AUC per epoch."""
    job: coordinator_pb2.JobStatus
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                  console=console, disable=quiet, transient=False) as progress:
        task = progress.add_task(job_id, total=max_epochs, status="starting")
        while True:
            job = stub.GetJob(coordinator_pb2.GetJobRequest(job_id=job_id), timeout=30)
            metrics = json.loads(job.metrics_json or "{}")
            if "epoch" in metrics:
                ks = f"  KS {metrics['ks']:.3f}" if metrics.get("ks") is not None else ""
                progress.update(task, completed=metrics["epoch"] + 1,
                                status=f"{unit} {metrics['epoch']}  loss {metrics['loss']:.4f}  "
                                       f"AUC {metrics['auc']:.4f}{ks}")
            if job.state != "running":
                progress.update(task, status=f"{job.state}: " + (
                    job.error or f"model {metrics.get('model_id', '')}"))
                return job
            time.sleep(poll_s)


def _finish(job: coordinator_pb2.JobStatus, as_json: bool) -> None:
    if as_json:
        from google.protobuf import json_format

        print(json.dumps(json_format.MessageToDict(job, preserving_proto_field_name=True),
                         indent=2))
    if job.state != "done":
        raise ProtocolError(f"job {job.job_id} {job.state}: {job.error}")


# (section of the job file, its length setting and default, the progress unit) per algorithm
_LENGTH = {"vlr": ("max_epochs", 20, "epoch"), "sbt": ("trees", 30, "tree")}


def _launch(algorithm: str, config: Path, job_id: str, detach: bool,
            stub: coordinator_pb2_grpc.CoordinatorServiceStub, as_json: bool) -> None:
    """Submit a training job of `algorithm` and, unless detached, follow it to its end."""
    from fedcredit.cli.main import guarded

    def run() -> None:
        settings = read_job_file(config)
        job = stub.Train(coordinator_pb2.TrainRequest(config_json=json.dumps(settings),
                                                      job_id=job_id, algorithm=algorithm),
                         timeout=60)
        if not detach:
            key, default, unit = _LENGTH[algorithm]
            job = follow_job(stub, job.job_id, settings.get(algorithm, {}).get(key, default),
                             quiet=as_json, unit=unit)
        _finish(job, as_json)

    guarded(run)


@train_app.command("vlr")
def train_vlr(
    config: Annotated[Path, typer.Option(help="Job TOML: label, features, align_job, [vlr].")],
    job_id: Annotated[str, typer.Option(help="Job id; default a fresh one.")] = "",
    detach: Annotated[bool, typer.Option(help="Start the job and return.")] = False,
    coordinator: CoordinatorOpt = DEFAULT_COORDINATOR,
    pki: PkiOpt = Path("pki"),
    identity: IdentityOpt = "operator",
    insecure: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Vertical logistic regression across the bank and every feature node (CKKS)."""
    _launch("vlr", config, job_id, detach, coordinator_stub(coordinator, pki, identity, insecure),
            as_json)


@train_app.command("sbt")
def train_sbt(
    config: Annotated[Path, typer.Option(help="Job TOML: label, features, align_job, [sbt].")],
    job_id: Annotated[str, typer.Option(help="Job id; default a fresh one.")] = "",
    detach: Annotated[bool, typer.Option(help="Start the job and return.")] = False,
    coordinator: CoordinatorOpt = DEFAULT_COORDINATOR,
    pki: PkiOpt = Path("pki"),
    identity: IdentityOpt = "operator",
    insecure: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Vertical gradient-boosted trees (SecureBoost) with encrypted histograms."""
    _launch("sbt", config, job_id, detach, coordinator_stub(coordinator, pki, identity, insecure),
            as_json)


def resume_job(job_id: str, coordinator: str, pki: Path, identity: str, insecure: bool,
               as_json: bool) -> None:
    stub = coordinator_stub(coordinator, pki, identity, insecure)
    job = stub.ResumeJob(coordinator_pb2.GetJobRequest(job_id=job_id), timeout=60)
    _finish(follow_job(stub, job.job_id, quiet=as_json), as_json)

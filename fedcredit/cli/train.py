"""`fedcredit train vlr|sbt|hfl`: launch training jobs and follow them to their end."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

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
from fedcredit.cli.shared import console, emit_json, guarded
from fedcredit.follow import follow_job
from models.jobs import parse_job
from models.protocol import Algorithm
from models.registry import ALGORITHMS
from proto.fedcredit.v1 import coordinator_pb2, coordinator_pb2_grpc

train_app = typer.Typer(help="Launch training jobs.", no_args_is_help=True)

def read_job_file(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except OSError as err:
        raise DataValidationError(f"{path}: cannot read the job file: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise DataValidationError(f"{path}: not valid TOML: {err}") from err


def finish_job(job: coordinator_pb2.JobStatus, as_json: bool) -> None:
    """Print the job's final status with --json; raise unless it is done."""
    if as_json:
        from google.protobuf import json_format

        print(json.dumps(json_format.MessageToDict(job, preserving_proto_field_name=True),
                         indent=2))
    if job.state != "done":
        raise ProtocolError(f"job {job.job_id} {job.state}: {job.error}")
    if not as_json:
        show_iv_table(job)


def show_iv_table(job: coordinator_pb2.JobStatus) -> None:
    """A job whose report carries an IV table (WOE binning): print it, highest IV first."""
    history = json.loads(job.metrics_json or "{}").get("history") or [{}]
    rows = history[-1].get("iv_table")
    if not rows:
        return
    table = Table(title=f"information value ({job.job_id})")
    vif = any("vif" in r for r in rows)  # a job with max_vif
    for column in ("party", "characteristic", "IV", "bins", *(("VIF",) if vif else ()),
                   "selected", "reason"):
        table.add_column(column)
    for row in sorted(rows, key=lambda r: -float(r["iv"])):
        shown = (f"{row['vif']:.2f}" if "vif" in row else "",) if vif else ()
        table.add_row(row["party"], row["name"], f"{row['iv']:.4f}", str(row["bins"]), *shown,
                      "yes" if row["selected"] else "no", row["reason"])
    console.print(table)
    console.print("per-bin counts, WOE and IV stay at the bank (its state folder, "
                  f"models/{job.job_id}/); each feature node keeps its own bins and WOE")


def _launch(algo: Algorithm, config: Path, job_id: str, detach: bool,
            stub: coordinator_pb2_grpc.CoordinatorServiceStub, as_json: bool) -> None:
    """Check the job file here (every bad key named), submit it and, unless detached, follow it."""

    def run() -> None:
        raw = read_job_file(config)
        _, settings = parse_job(algo, raw)  # the coordinator checks again; this fails sooner
        job = stub.Train(coordinator_pb2.TrainRequest(config_json=json.dumps(raw),
                                                      job_id=job_id, algorithm=algo.name),
                         timeout=60)
        if not detach:
            job = follow_job(stub, job.job_id, algo.rounds(settings), quiet=as_json,
                             unit=algo.unit, console=console)
        finish_job(job, as_json)

    guarded(run)


def _train_command(algo: Algorithm) -> Callable[..., None]:
    """`fedcredit train NAME` for one declared algorithm."""

    def command(
        config: Path = typer.Option(  # noqa: B008 - the help names this algorithm
            ..., help=f"Job TOML: label, features, align_job, \\[{algo.name}]."),
        job_id: str = typer.Option("", help="Job id; default a fresh one."),
        detach: bool = typer.Option(False, help="Start the job and return."),
        coordinator: CoordinatorOpt = DEFAULT_COORDINATOR,
        pki: PkiOpt = Path("pki"),
        identity: IdentityOpt = "operator",
        insecure: InsecureOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        _launch(algo, config, job_id, detach,
                coordinator_stub(coordinator, pki, identity, insecure), as_json)

    command.__doc__ = algo.summary
    return command


for _algo in ALGORITHMS.values():
    train_app.command(_algo.name)(_train_command(_algo))


@train_app.command("hfl")
def train_hfl(
    config: Annotated[Path, typer.Option(
        help="Job TOML: banks (array of tables), rounds, lr, secagg, dp table.")],
    workdir: Annotated[Path | None, typer.Option(
        help="Keep keys, logs and the audit log here (default: a temporary folder).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Horizontal logistic regression across banks: FedAvg on Flower with SecAgg+ (and DP)."""
    from fedcredit.hfl.job import load_job
    from fedcredit.hfl.run import run_hfl

    job = guarded(lambda: load_job(config))
    guarded(job.check_privacy)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} rounds"), TimeElapsedColumn(),
                  console=Console(stderr=True, emoji=False), transient=as_json) as bar:
        task = bar.add_task("starting federation", total=job.rounds)

        def on_event(event: dict[str, Any]) -> None:
            if event["event"] == "stage-send":
                bar.update(task, description=f"round {event['round']}: {event['stage']}")
            elif event["event"] == "round-end":
                bar.advance(task)
                auc = "-" if event["auc"] is None else f"{event['auc']:.4f}"
                eps = "" if event["epsilon"] is None else f", epsilon {event['epsilon']:.2f}"
                bar.console.print(
                    f"round {event['round']}: {event['status']}, "
                    f"{event['banks_aggregated']} banks, {event['seconds']:.1f}s, AUC {auc}{eps}")

        report = guarded(lambda: run_hfl(job, workdir, progress=on_event))
    report.pop("final_weights", None)
    if as_json:
        emit_json(report)
        return
    table = Table(title=f"horizontal training ({len(job.banks)} banks)")
    table.add_column("figure")
    table.add_column("value")
    for key in ("auc", "auc_centralized", "auc_gap", "rounds_completed", "secagg", "epsilon",
                "seconds", "seconds_per_round", "bytes_per_round", "waiting_share"):
        value = report.get(key)
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)

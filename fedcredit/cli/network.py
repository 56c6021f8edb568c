"""`fedcredit nodes|align|jobs|models`: the operator's calls to the coordinator."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from google.protobuf import json_format
from rich.table import Table

from common.errors import ProtocolError
from fedcredit.cli.exit_codes import ExitCode
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
from fedcredit.cli.train import finish_job
from fedcredit.follow import follow_job
from proto.fedcredit.v1 import common_pb2, coordinator_pb2, node_pb2

jobs_app = typer.Typer(help="Jobs: list, show, resume, cancel, delete.",
                       invoke_without_command=True)
nodes_app = typer.Typer(help="Nodes: list (with their data snapshots), reload a node's data.",
                        invoke_without_command=True)


@nodes_app.callback()
def nodes_cmd(
    ctx: typer.Context,
    coordinator: CoordinatorOpt = DEFAULT_COORDINATOR,
    pki: PkiOpt = Path("pki"),
    identity: IdentityOpt = "operator",
    insecure: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Registered nodes: name, role, health, rows, schema and data snapshot (never data)."""
    if ctx.invoked_subcommand is not None:
        return
    stub = coordinator_stub(coordinator, pki, identity, insecure)
    reply = guarded(lambda: stub.ListNodes(coordinator_pb2.ListNodesRequest(), timeout=30))
    if as_json:
        emit_json([json_format.MessageToDict(n, preserving_proto_field_name=True)
                   for n in reply.nodes])
        return
    table = Table(title="nodes")
    for column in ("party", "role", "health", "rows", "endpoint", "features", "snapshot"):
        table.add_column(column)
    for n in reply.nodes:
        role = common_pb2.Role.Name(n.role).removeprefix("ROLE_").lower()
        features = ", ".join(f.name for f in n.schema.features)
        health_style = "green" if n.health == "SERVING" else "red"
        rows = f"{n.rows:,}" + (f" ({n.schema.unlabelled_rows:,} unlabelled)"
                                 if n.schema.unlabelled_rows else "")
        table.add_row(n.party, role, f"[{health_style}]{n.health}[/]", rows, n.endpoint,
                      features, _snapshot_text(n.snapshot))
    console.print(table)


def _snapshot_text(snapshot: common_pb2.DataSnapshot) -> str:
    """Version and load time, and the last refused reload in red."""
    if not snapshot.version:
        return ""
    loaded = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snapshot.loaded_at_unix))
    text = f"{snapshot.version} (loaded {loaded})"
    if snapshot.refused_reason:
        refused = time.strftime("%H:%M:%S", time.localtime(snapshot.refused_at_unix))
        text += f"\n[red]refused at {refused}: {snapshot.refused_reason}[/]"
    return text


@nodes_app.command("reload")
def reload_cmd(
    party: Annotated[str, typer.Argument(help="The node to reload.")],
    coordinator: CoordinatorOpt = DEFAULT_COORDINATOR,
    pki: PkiOpt = Path("pki"),
    identity: IdentityOpt = "operator",
    insecure: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Have a node re-read its data source now, validated like at start-up; a bad table is
    refused and the node keeps serving its current snapshot."""
    stub = coordinator_stub(coordinator, pki, identity, insecure)
    reply = guarded(lambda: stub.ReloadNode(coordinator_pb2.ReloadNodeRequest(party=party),
                                            timeout=660))
    if as_json:
        emit_json(json_format.MessageToDict(reply, preserving_proto_field_name=True))
    else:
        style = {"loaded": "green", "refused": "red"}.get(reply.outcome, "yellow")
        console.print(f"{reply.party}: [{style}]{reply.outcome}[/] - {reply.message}")
    if reply.outcome == "refused":
        raise typer.Exit(code=int(ExitCode.INVALID_DATA))


def align_cmd(
    label: Annotated[str, typer.Option(help="The label node (the bank).")],
    feature: Annotated[list[str] | None, typer.Option(
        help="A feature node (repeat); default every registered one.")] = None,
    cardinality_only: Annotated[bool, typer.Option(
        help="Feature nodes learn only the intersection size.")] = False,
    job_id: Annotated[str, typer.Option(help="Job id; default a fresh one.")] = "",
    coordinator: CoordinatorOpt = DEFAULT_COORDINATOR,
    pki: PkiOpt = Path("pki"),
    identity: IdentityOpt = "operator",
    insecure: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Align the bank's customers with each data holder's by ECDH-PSI; print the sizes."""
    stub = coordinator_stub(coordinator, pki, identity, insecure)
    mode = node_pb2.PSI_MODE_CARDINALITY if cardinality_only else node_pb2.PSI_MODE_FULL
    request = coordinator_pb2.AlignRequest(label_party=label, feature_parties=feature or [],
                                           mode=mode, job_id=job_id)
    reply = guarded(lambda: stub.Align(request, timeout=3600))
    if as_json:
        emit_json(json_format.MessageToDict(reply, preserving_proto_field_name=True))
        return
    table = Table(title=f"alignment job {reply.job_id}")
    for column in ("party", "bank rows", "party rows", "intersection", "seconds"):
        table.add_column(column)
    for p in reply.pairs:
        table.add_row(p.party, f"{p.label_rows:,}", f"{p.party_rows:,}",
                      f"{p.intersection_size:,}", f"{p.seconds:.2f}")
    console.print(table)


@jobs_app.callback()
def jobs_cmd(
    ctx: typer.Context,
    coordinator: CoordinatorOpt = DEFAULT_COORDINATOR,
    pki: PkiOpt = Path("pki"),
    identity: IdentityOpt = "operator",
    insecure: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Jobs with their state, epoch and metrics."""
    if ctx.invoked_subcommand is not None:
        return
    stub = coordinator_stub(coordinator, pki, identity, insecure)
    reply = guarded(lambda: stub.ListJobs(coordinator_pb2.ListJobsRequest(), timeout=30))
    if as_json:
        emit_json([json_format.MessageToDict(j, preserving_proto_field_name=True)
                   for j in reply.jobs])
        return
    table = Table(title="jobs")
    for column in ("job", "kind", "state", "parties", "epoch", "AUC", "detail"):
        table.add_column(column)
    for j in reply.jobs:
        m = json.loads(j.metrics_json or "{}")
        auc = f"{m['auc']:.4f}" if isinstance(m.get("auc"), float) else ""
        detail = j.error or m.get("model_id", "") or json.dumps(
            m.get("intersections", "")).strip('"')
        table.add_row(j.job_id, j.kind, j.state, ", ".join(j.parties), str(m.get("epoch", "")),
                      auc, detail)
    console.print(table)


@jobs_app.command("resume")
def jobs_resume(
    job_id: Annotated[str, typer.Argument(help="The job to continue from its last checkpoint.")],
    coordinator: CoordinatorOpt = DEFAULT_COORDINATOR,
    pki: PkiOpt = Path("pki"),
    identity: IdentityOpt = "operator",
    insecure: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Continue a failed or interrupted training job from its last epoch."""
    def run() -> None:
        stub = coordinator_stub(coordinator, pki, identity, insecure)
        job = stub.ResumeJob(coordinator_pb2.GetJobRequest(job_id=job_id), timeout=60)
        finish_job(follow_job(stub, job.job_id, quiet=as_json), as_json)

    guarded(run)


def _job_dict(job: coordinator_pb2.JobStatus) -> dict[str, object]:
    out = json_format.MessageToDict(job, preserving_proto_field_name=True,
                                    always_print_fields_with_no_presence=True)
    out["metrics"] = json.loads(out.pop("metrics_json") or "{}")
    out["config"] = json.loads(out.pop("config_json") or "{}")
    return out


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="The job to show.")],
    coordinator: CoordinatorOpt = DEFAULT_COORDINATOR,
    pki: PkiOpt = Path("pki"),
    identity: IdentityOpt = "operator",
    insecure: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """One job: state, kind, parties, settings (no secrets), figures per round and error."""
    stub = coordinator_stub(coordinator, pki, identity, insecure)
    job = guarded(lambda: stub.GetJob(coordinator_pb2.GetJobRequest(job_id=job_id), timeout=30))
    shown = _job_dict(job)
    if as_json:
        emit_json(shown)
        return
    metrics = dict(shown["metrics"])  # type: ignore[call-overload]
    history = metrics.pop("history", [])
    table = Table(title=f"job {job.job_id}", show_header=False)
    for key, value in (("kind", job.kind), ("state", job.state),
                       ("parties", ", ".join(job.parties)),
                       ("created", time.strftime("%Y-%m-%d %H:%M:%S",
                                                 time.localtime(job.created_at_unix))),
                       ("updated", time.strftime("%Y-%m-%d %H:%M:%S",
                                                 time.localtime(job.updated_at_unix))),
                       ("settings", json.dumps(shown["config"], indent=1)),
                       ("figures", json.dumps(metrics, indent=1)), ("error", job.error)):
        if value:
            table.add_row(key, value)
    console.print(table)
    if history:
        rounds = Table(title="rounds")
        for column in ("round", "loss", "AUC", "KS", "seconds"):
            rounds.add_column(column)
        for h in history:
            rounds.add_row(*[str(h.get(k, "")) if not isinstance(h.get(k), float)
                             else f"{h[k]:.4f}" for k in ("epoch", "loss", "auc", "ks",
                                                          "seconds")])
        console.print(rounds)


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(help="The running training job to stop.")],
    wait: Annotated[float, typer.Option(
        help="Seconds to wait for the job to stop (0: return at once).")] = 300.0,
    coordinator: CoordinatorOpt = DEFAULT_COORDINATOR,
    pki: PkiOpt = Path("pki"),
    identity: IdentityOpt = "operator",
    insecure: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Stop a running training job at its next step; resume it later with `jobs resume`."""
    def run() -> coordinator_pb2.JobStatus:
        stub = coordinator_stub(coordinator, pki, identity, insecure)
        job: coordinator_pb2.JobStatus = stub.CancelJob(
            coordinator_pb2.GetJobRequest(job_id=job_id), timeout=30)
        deadline = time.monotonic() + wait
        while job.state == "running" and time.monotonic() < deadline:
            time.sleep(0.3)
            job = stub.GetJob(coordinator_pb2.GetJobRequest(job_id=job_id), timeout=30)
        if wait > 0 and job.state == "running":
            raise ProtocolError(f"job {job_id} is still running {wait:.0f}s after the cancel; "
                                f"it stops at its next step (`fedcredit jobs show {job_id}`)")
        return job

    job = guarded(run)
    if as_json:
        emit_json(_job_dict(job))
        return
    console.print(f"job {job.job_id}: {job.state}" + (
        f" (resume it with `fedcredit jobs resume {job.job_id}`)"
        if job.state == "cancelled" else " (cancel requested)"), highlight=False)


@jobs_app.command("delete")
def jobs_delete(
    job_id: Annotated[str, typer.Argument(help="The job to delete (not a running one).")],
    force: Annotated[bool, typer.Option(
        help="Delete a training job whose model is registered (the model stays).")] = False,
    coordinator: CoordinatorOpt = DEFAULT_COORDINATOR,
    pki: PkiOpt = Path("pki"),
    identity: IdentityOpt = "operator",
    insecure: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete a job's record at the coordinator (files at the nodes stay)."""
    stub = coordinator_stub(coordinator, pki, identity, insecure)
    reply = guarded(lambda: stub.DeleteJob(coordinator_pb2.DeleteJobRequest(
        job_id=job_id, force=force), timeout=30))
    if as_json:
        emit_json(json_format.MessageToDict(reply, preserving_proto_field_name=True))
        return
    console.print(f"deleted job {reply.job_id} (a {reply.kind} job, {reply.state})",
                  highlight=False)


def models_cmd(
    coordinator: CoordinatorOpt = DEFAULT_COORDINATOR,
    pki: PkiOpt = Path("pki"),
    identity: IdentityOpt = "operator",
    insecure: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Registered models: name, version, parties and metrics (weights stay at the nodes)."""
    stub = coordinator_stub(coordinator, pki, identity, insecure)
    reply = guarded(lambda: stub.ListModels(coordinator_pb2.ListModelsRequest(), timeout=30))
    if as_json:
        emit_json([json_format.MessageToDict(m, preserving_proto_field_name=True)
                   for m in reply.models])
        return
    table = Table(title="models")
    for column in ("model", "algorithm", "job", "parties", "metrics"):
        table.add_column(column)
    for m in reply.models:
        table.add_row(m.model_id, m.algorithm, m.job_id, ", ".join(m.parties), m.metrics_json)
    console.print(table)

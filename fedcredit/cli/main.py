"""Entry point of the `fedcredit` command."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import grpc
import typer
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table

from common.errors import (
    AuditError,
    DataValidationError,
    FedcreditError,
    PeerUnavailable,
    ProtocolError,
    TrustError,
)
from common.lifecycle import die_with_parent
from fedcredit.cli.exit_codes import ExitCode
from fedcredit.cli.hfl import bench_hfl, train_hfl
from fedcredit.cli.operator import (
    DEFAULT_COORDINATOR,
    CoordinatorOpt,
    IdentityOpt,
    InsecureOpt,
    JsonOpt,
    PkiOpt,
    coordinator_stub,
)
from fedcredit.cli.train import train_app
from proto.fedcredit.v1 import common_pb2, coordinator_pb2, node_pb2

app = typer.Typer(help="fedcredit: federated credit assessment for supply-chain finance.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
pki_app = typer.Typer(help="Certificates for mutual TLS.", no_args_is_help=True)
node_app = typer.Typer(help="Run a data holder's node.", no_args_is_help=True)
coordinator_app = typer.Typer(help="Run the coordinator.", no_args_is_help=True)
data_app = typer.Typer(help="Data tools.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks (JSON output).", no_args_is_help=True)
audit_app = typer.Typer(help="Audit logs.", no_args_is_help=True)
app.add_typer(pki_app, name="pki")
app.add_typer(node_app, name="node")
app.add_typer(coordinator_app, name="coordinator")
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
app.add_typer(audit_app, name="audit")
app.add_typer(train_app, name="train")
train_app.command("hfl")(train_hfl)
bench_app.command("hfl")(bench_hfl)

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

EXIT_OF: list[tuple[type[FedcreditError], ExitCode]] = [
    (DataValidationError, ExitCode.INVALID_DATA),
    (TrustError, ExitCode.TRUST),
    (PeerUnavailable, ExitCode.UNAVAILABLE),
    (ProtocolError, ExitCode.PROTOCOL),
    (AuditError, ExitCode.AUDIT_BROKEN),
]


def guarded(action: Callable[[], T]) -> T:
    """Run a command body; our errors become a clear message and one exit code."""
    try:
        return action()
    except FedcreditError as err:
        code = next((c for kind, c in EXIT_OF if isinstance(err, kind)), ExitCode.FAILED)
        err_console.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(int(code)) from None
    except grpc.RpcError as err:
        unavailable = err.code() in (grpc.StatusCode.UNAVAILABLE,
                                     grpc.StatusCode.DEADLINE_EXCEEDED)
        err_console.print(f"[bold red]error:[/] {err.code().name}: {err.details()}",
                          highlight=False)
        raise typer.Exit(int(ExitCode.UNAVAILABLE if unavailable else ExitCode.PROTOCOL)) \
            from None
    except KeyboardInterrupt:
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


def _emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")


def _show_result(result: dict[str, Any], as_json: bool) -> None:
    """A benchmark's figures: one JSON object with --json, a readable table otherwise."""
    if as_json:
        _emit_json(result)
        return
    table = Table(show_header=False)
    for key, value in result.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)


# pki ----------------------------------------------------------------------------------------
@pki_app.command("init")
def pki_init(
    nodes: Annotated[str, typer.Option(help="Comma-separated party names.")],
    out: Annotated[Path, typer.Option(help="Folder for the CA and certificates.")],
    force: Annotated[bool, typer.Option(help="Replace an existing CA.")] = False,
) -> None:
    """Mint a CA and a certificate for the coordinator, the operator and every node."""
    from crypto.pki import init_pki

    names = [n.strip() for n in nodes.split(",") if n.strip()]
    guarded(lambda: init_pki(out, names, force=force))
    console.print(f"CA and certificates for coordinator, operator, {', '.join(names)} in {out}")


# node ---------------------------------------------------------------------------------------
@node_app.command("serve")
def node_serve(
    config: Annotated[Path, typer.Option(help="The node's TOML config.")],
    insecure: InsecureOpt = False,
    json_logs: Annotated[bool, typer.Option("--json-logs", help="JSON log lines.")] = False,
) -> None:
    """Validate the node's table and serve NodeService; registers with the coordinator."""
    from common.logs import setup_logging
    from node.config import load_node_config
    from node.server import serve
    from node.state import NodeState

    def run() -> None:
        die_with_parent()
        cfg = load_node_config(config)
        setup_logging(f"node:{cfg.party}", json_mode=json_logs)
        serve(NodeState.from_config(cfg, insecure=insecure))

    guarded(run)


# coordinator --------------------------------------------------------------------------------
@coordinator_app.command("serve")
def coordinator_serve(
    config: Annotated[Path, typer.Option(help="The coordinator's TOML config.")],
    insecure: InsecureOpt = False,
    json_logs: Annotated[bool, typer.Option("--json-logs", help="JSON log lines.")] = False,
) -> None:
    """Serve CoordinatorService: node registry, jobs, relay."""
    from common.logs import setup_logging
    from coordinator.config import load_coordinator_config
    from coordinator.server import serve
    from coordinator.service import Coordinator

    def run() -> None:
        die_with_parent()
        cfg = load_coordinator_config(config)
        setup_logging("coordinator", json_mode=json_logs)
        serve(Coordinator(cfg, insecure=insecure))

    guarded(run)


# operator calls -----------------------------------------------------------------------------
@app.command("nodes")
def nodes_cmd(
    coordinator: CoordinatorOpt = DEFAULT_COORDINATOR,
    pki: PkiOpt = Path("pki"),
    identity: IdentityOpt = "operator",
    insecure: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Registered nodes: name, role, health, rows and schema (never data)."""
    stub = coordinator_stub(coordinator, pki, identity, insecure)
    reply = guarded(lambda: stub.ListNodes(coordinator_pb2.ListNodesRequest(), timeout=30))
    if as_json:
        _emit_json([json_format.MessageToDict(n, preserving_proto_field_name=True)
                    for n in reply.nodes])
        return
    table = Table(title="nodes")
    for column in ("party", "role", "health", "rows", "endpoint", "features"):
        table.add_column(column)
    for n in reply.nodes:
        role = common_pb2.Role.Name(n.role).removeprefix("ROLE_").lower()
        features = ", ".join(f.name for f in n.schema.features)
        health_style = "green" if n.health == "SERVING" else "red"
        table.add_row(n.party, role, f"[{health_style}]{n.health}[/]", f"{n.rows:,}", n.endpoint,
                      features)
    console.print(table)


@app.command("align")
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
        _emit_json(json_format.MessageToDict(reply, preserving_proto_field_name=True))
        return
    table = Table(title=f"alignment job {reply.job_id}")
    for column in ("party", "bank rows", "party rows", "intersection", "seconds"):
        table.add_column(column)
    for p in reply.pairs:
        table.add_row(p.party, f"{p.label_rows:,}", f"{p.party_rows:,}",
                      f"{p.intersection_size:,}", f"{p.seconds:.2f}")
    console.print(table)


jobs_app = typer.Typer(help="Jobs: list, resume.", invoke_without_command=True)
app.add_typer(jobs_app, name="jobs")


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
        _emit_json([json_format.MessageToDict(j, preserving_proto_field_name=True)
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
    from fedcredit.cli.train import resume_job

    guarded(lambda: resume_job(job_id, coordinator, pki, identity, insecure, as_json))


@app.command("models")
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
        _emit_json([json_format.MessageToDict(m, preserving_proto_field_name=True)
                    for m in reply.models])
        return
    table = Table(title="models")
    for column in ("model", "algorithm", "job", "parties", "metrics"):
        table.add_column(column)
    for m in reply.models:
        table.add_row(m.model_id, m.algorithm, m.job_id, ", ".join(m.parties), m.metrics_json)
    console.print(table)


@app.command("score")
def score_cmd(
    bank: Annotated[str, typer.Option(help="The requesting bank (its node's party name).")],
    consent: Annotated[str, typer.Option(help="The enterprise's consent reference.")] = "",
    id_: Annotated[str | None, typer.Option("--id", help="One enterprise id.")] = None,
    ids: Annotated[Path | None, typer.Option(help="A file of ids, one a line (or CSV `id`).")
                   ] = None,
    out: Annotated[Path | None, typer.Option(help="CSV of decisions (batch mode).")] = None,
    config: Annotated[Path, typer.Option(envvar="FEDCREDIT_NODE_CONFIG",
                                         help="The bank node's TOML config (keys, state).")
                      ] = Path("bank.toml"),
    policy: Annotated[Path | None, typer.Option(help="Credit policy TOML.")] = None,
    model: Annotated[str, typer.Option(help="Model id; default the bank's latest.")] = "",
    purpose: Annotated[str, typer.Option(help="Why the bank asks.")] = "credit assessment",
    insecure: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Joint credit decision: PD, score, grade, credit line; other parties' parts stay encrypted."""
    from fedcredit.scoring import read_ids, write_decisions
    from node.config import load_node_config
    from node.policy import load_policy
    from node.scoring.bank import BankScorer

    def run() -> None:
        cfg = load_node_config(config)
        if cfg.party != bank:
            raise DataValidationError(f"{config} is the config of {cfg.party!r}, not {bank!r}")
        if (id_ is None) == (ids is None):
            raise DataValidationError("give exactly one of --id and --ids")
        wanted = [id_] if id_ is not None else read_ids(ids)  # type: ignore[arg-type]
        scorer = BankScorer(cfg, load_policy(policy), model_id=model, insecure=insecure)
        try:
            decisions = scorer.score(wanted, consent, purpose)
        finally:
            scorer.close()
        if out is not None:
            write_decisions(out, decisions)
        if as_json:
            _emit_json([d.__dict__ for d in decisions[:1000]])
            return
        table = Table(title=f"joint decisions ({scorer.model_id})")
        for column in ("id", "PD", "score", "grade", "credit line", "parties", "reasons"):
            table.add_column(column)
        for d in decisions[:20]:
            table.add_row(d.id, f"{d.probability:.4f}", f"{d.score:.0f}", d.grade,
                          f"{d.credit_line:,.0f}", str(d.parties_covering), ", ".join(d.reasons))
        console.print(table)
        if len(decisions) > 20:
            console.print(f"... {len(decisions) - 20:,} more" + (f" in {out}" if out else ""))

    guarded(run)


# data ---------------------------------------------------------------------------------------
@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option(help="Output folder.")],
    enterprises: Annotated[int, typer.Option(help="Number of SMEs.")] = 20000,
    seed: Annotated[int, typer.Option(help="Random seed (reproducible).")] = 7,
    banks: Annotated[int, typer.Option(help="Banks with disjoint customers.")] = 1,
) -> None:
    """Synthetic supply chain: one file per party, plus segments and column descriptions."""
    from fedcredit.synth import synthesize

    result = guarded(lambda: synthesize(out, enterprises=enterprises, seed=seed, banks=banks))
    table = Table(title=f"synthetic supply chain in {out}")
    for column in ("party", "file", "rows", "features"):
        table.add_column(column)
    for name, part in result.parties.items():
        table.add_row(name, str(part.path), f"{part.rows:,}", str(len(part.feature_columns)))
    console.print(table)


# audit --------------------------------------------------------------------------------------
@audit_app.command("verify")
def audit_verify(
    path: Annotated[Path, typer.Argument(help="An audit.jsonl file.")],
    as_json: JsonOpt = False,
) -> None:
    """Check an audit log's hash chain; report the first broken entry."""
    from common.audit import verify_audit_log

    report = guarded(lambda: verify_audit_log(path))
    if as_json:
        _emit_json({"ok": report.ok, "entries": report.entries, "first_bad": report.first_bad,
                    "reason": report.reason})
    elif report.ok:
        console.print(f"[green]ok[/]: {report.entries} entries, chain intact")
    else:
        console.print(f"[red]broken[/] at entry {report.first_bad}: {report.reason}")
    if not report.ok:
        raise typer.Exit(int(ExitCode.AUDIT_BROKEN))


# bench --------------------------------------------------------------------------------------
@bench_app.command("psi")
def bench_psi(
    ids: Annotated[int, typer.Option(help="Ids on each side.")] = 100_000,
    overlap: Annotated[float, typer.Option(help="Share of ids in common.")] = 0.5,
    as_json: JsonOpt = False,
) -> None:
    """ECDH-PSI between two parties in this process, on all cores."""
    from crypto.psi import run_psi_benchmark

    result = guarded(lambda: run_psi_benchmark(ids, overlap=overlap))
    _show_result(result, as_json)


@bench_app.command("vlr")
def bench_vlr(
    rows: Annotated[int, typer.Option(help="Rows (all aligned).")] = 100_000,
    label_features: Annotated[int, typer.Option(help="Features at the bank.")] = 30,
    host_features: Annotated[int, typer.Option(help="Features at the feature node.")] = 300,
    epochs: Annotated[int, typer.Option(help="Epochs to time.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Rows per mini-batch.")] = 4096,
    as_json: JsonOpt = False,
) -> None:
    """Vertical LR epoch time, encrypted and with the plaintext twin in the same run."""
    from models.vlr.bench import run_vlr_benchmark

    result = guarded(lambda: run_vlr_benchmark(rows, label_features, host_features,
                                               epochs=epochs, batch_size=batch_size))
    _show_result(result, as_json)


@bench_app.command("sbt")
def bench_sbt(
    rows: Annotated[int, typer.Option(help="Rows (all aligned).")] = 100_000,
    label_features: Annotated[int, typer.Option(help="Features at the bank.")] = 30,
    host_features: Annotated[int, typer.Option(help="Features at the feature node.")] = 300,
    trees: Annotated[int, typer.Option(help="Trees to time.")] = 1,
    depth: Annotated[int, typer.Option(help="Tree depth.")] = 3,
    bins: Annotated[int, typer.Option(help="Bins per feature.")] = 32,
    as_json: JsonOpt = False,
) -> None:
    """SecureBoost seconds per tree: encrypted, plaintext twin and local XGBoost, same run."""
    from models.sbt.bench import run_sbt_benchmark

    result = guarded(lambda: run_sbt_benchmark(rows, label_features, host_features,
                                               trees=trees, depth=depth, bins=bins))
    _show_result(result, as_json)


@bench_app.command("score")
def bench_score(
    ids: Annotated[int, typer.Option(help="Ids scored in one batch.")] = 100_000,
    singles: Annotated[int, typer.Option(help="Single-enterprise requests timed.")] = 200,
    as_json: JsonOpt = False,
) -> None:
    """Joint scoring through the coordinator to four nodes: latency and batch throughput."""
    from fedcredit.bench_score import run_score_benchmark

    result = guarded(lambda: run_score_benchmark(ids, singles=singles))
    _show_result(result, as_json)


# demo ---------------------------------------------------------------------------------------
@app.command("demo")
def demo_cmd(
    report: Annotated[Path, typer.Option(help="Where to write the JSON report.")] = Path(
        "report.json"),
    enterprises: Annotated[int, typer.Option(help="Synthetic SMEs.")] = 20000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    workdir: Annotated[Path | None, typer.Option(
        help="Keep certificates, data, configs and logs here (default: a temporary folder).")
    ] = None,
    banks: Annotated[int, typer.Option(
        help="Also train across this many banks on Flower (adds `horizontal`).")] = 0,
    hfl_rounds: Annotated[int, typer.Option(help="Rounds of horizontal training.")] = 3,
) -> None:
    """The whole network on this machine: coordinator and four nodes as separate processes."""
    from fedcredit.demo import run_demo

    guarded(lambda: run_demo(report, enterprises=enterprises, seed=seed, workdir=workdir,
                             console=console, banks=banks, hfl_rounds=hfl_rounds))


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""`fedcredit train hfl` and `fedcredit bench hfl`: horizontal training across banks on Flower.

Registered in fedcredit/cli/main.py with ``train_app.command("hfl")(train_hfl)`` and
``bench_app.command("hfl")(bench_hfl)``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(stderr=True)


def _guarded(action: Any) -> Any:
    from fedcredit.cli.main import guarded  # at call time: main imports this module

    return guarded(action)


def _emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")


def train_hfl(
    config: Annotated[Path, typer.Option(
        help="Job TOML: banks (array of tables), rounds, lr, secagg, dp table.")],
    workdir: Annotated[Path | None, typer.Option(
        help="Keep keys, logs and the audit log here (default: a temporary folder).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Horizontal logistic regression across banks: FedAvg on Flower with SecAgg+ (and DP)."""
    from fedcredit.hfl import load_job, run_hfl

    job = _guarded(lambda: load_job(config))
    _guarded(job.check_privacy)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} rounds"), TimeElapsedColumn(),
                  console=console, transient=as_json) as bar:
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

        report = _guarded(lambda: run_hfl(job, workdir, progress=on_event))
    report.pop("final_weights", None)
    if as_json:
        _emit_json(report)
        return
    table = Table(title=f"horizontal training ({len(job.banks)} banks)")
    table.add_column("figure")
    table.add_column("value")
    for key in ("auc", "auc_centralized", "auc_gap", "rounds_completed", "secagg", "epsilon",
                "seconds", "seconds_per_round", "bytes_per_round", "waiting_share"):
        value = report.get(key)
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)


def bench_hfl(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    rounds: Annotated[int, typer.Option(help="Rounds per run.")] = 3,
    data: Annotated[Path | None, typer.Option(
        help="CSV (id, y, features) split by rows among three banks; default synthetic.")
    ] = None,
) -> None:
    """Seconds and bytes per round over three banks, with SecAgg+ and without."""
    from fedcredit.hfl import run_hfl_benchmark

    result = _guarded(lambda: run_hfl_benchmark(rounds=rounds, data=data))
    if as_json:
        _emit_json(result)
        return
    table = Table(title=f"horizontal round costs ({result['banks']} banks, {result['rows']} rows)")
    for column in ("", "s/round", "bytes/round", "polling share", "ClientApp start-up",
                   "compute share"):
        table.add_column(column)
    for name in ("secagg", "plain"):
        r = result[name]
        table.add_row(name, f"{r['seconds_per_round']:.1f}", f"{r['bytes_per_round']:,.0f}",
                      f"{r['polling_share']:.0%}", f"{r['clientapp_startup_share']:.0%}",
                      f"{r['client_compute_share'] + r['server_compute_share']:.1%}")
    Console().print(table)
    Console().print(f"SecAgg+ round / plain round: {result['secagg_over_plain']:.2f}x")

"""`fedcredit bench psi|vlr|sbt|binning|score|rescore|hfl`: benchmarks, a table or JSON each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fedcredit.cli.operator import JsonOpt
from fedcredit.cli.shared import console, emit_json, guarded, show_result

bench_app = typer.Typer(help="Benchmarks (JSON output).", no_args_is_help=True)
RowsOpt = Annotated[int, typer.Option(help="Rows (all aligned).")]
LabelFeaturesOpt = Annotated[int, typer.Option(help="Features at the bank.")]
HostFeaturesOpt = Annotated[int, typer.Option(help="Features at the feature node.")]


@bench_app.command("psi")
def bench_psi(
    ids: Annotated[int, typer.Option(help="Ids on each side.")] = 100_000,
    overlap: Annotated[float, typer.Option(help="Share of ids in common.")] = 0.5,
    as_json: JsonOpt = False,
) -> None:
    """ECDH-PSI between two parties in this process, on all cores."""
    from crypto.psi import run_psi_benchmark

    show_result(guarded(lambda: run_psi_benchmark(ids, overlap=overlap)), as_json)


@bench_app.command("vlr")
def bench_vlr(
    rows: RowsOpt = 100_000,
    label_features: LabelFeaturesOpt = 30,
    host_features: HostFeaturesOpt = 300,
    epochs: Annotated[int, typer.Option(help="Epochs to time.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Rows per mini-batch.")] = 4096,
    as_json: JsonOpt = False,
) -> None:
    """Vertical LR epoch time, encrypted and with the plaintext twin in the same run."""
    from fedcredit.bench.vlr import run_vlr_benchmark

    show_result(guarded(lambda: run_vlr_benchmark(rows, label_features, host_features,
                                                  epochs=epochs, batch_size=batch_size)),
                as_json)


@bench_app.command("sbt")
def bench_sbt(
    rows: RowsOpt = 100_000,
    label_features: LabelFeaturesOpt = 30,
    host_features: HostFeaturesOpt = 300,
    trees: Annotated[int, typer.Option(help="Trees to time.")] = 1,
    depth: Annotated[int, typer.Option(help="Tree depth.")] = 3,
    bins: Annotated[int, typer.Option(help="Bins per feature.")] = 32,
    as_json: JsonOpt = False,
) -> None:
    """SecureBoost seconds per tree: encrypted, plaintext twin and local XGBoost, same run."""
    from fedcredit.bench.sbt import run_sbt_benchmark

    show_result(guarded(lambda: run_sbt_benchmark(rows, label_features, host_features,
                                                  trees=trees, depth=depth, bins=bins)),
                as_json)


@bench_app.command("binning")
def bench_binning(
    rows: RowsOpt = 100_000,
    label_features: LabelFeaturesOpt = 5,
    host_features: HostFeaturesOpt = 300,
    method: Annotated[str, typer.Option(help="quantile or optimal.")] = "optimal",
    bins: Annotated[int, typer.Option(help="Bins (quantile) or pre-bins (optimal).")] = 20,
    correlation: Annotated[bool, typer.Option(
        help="Also cross-party correlation filtering: one masked encrypted histogram per (bank "
             "column, host column), ~256 KiB each.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Federated WOE/IV binning: seconds and bytes, encrypted and plaintext twin, same run."""
    from fedcredit.bench.binning import run_binning_benchmark

    show_result(guarded(lambda: run_binning_benchmark(
        rows, label_features, host_features, method=method, bins=bins,
        max_correlation=0.7 if correlation else None)), as_json)


@bench_app.command("score")
def bench_score(
    ids: Annotated[int, typer.Option(help="Ids scored in one batch.")] = 100_000,
    singles: Annotated[int, typer.Option(help="Single-enterprise requests timed.")] = 200,
    clients: Annotated[int, typer.Option(
        help="Concurrent clients of the decision service in the load test.")] = 50,
    seconds: Annotated[float, typer.Option(help="Length of the load test, in seconds.")] = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Joint scoring through the coordinator to four nodes: latency, batch throughput, and the
    decision service under load (`service_*`)."""
    from fedcredit.bench.score import run_score_benchmark

    show_result(guarded(lambda: run_score_benchmark(ids, singles=singles, clients=clients,
                                                    load_seconds=seconds)), as_json)


@bench_app.command("rescore")
def bench_rescore(
    accounts: Annotated[int, typer.Option(help="Portfolio accounts re-scored.")] = 100_000,
    max_ids: Annotated[int | None, typer.Option(
        help="Every feature node's [scoring] max_ids_per_request (default: the nodes' own).",
        min=1)] = None,
    as_json: JsonOpt = False,
) -> None:
    """A portfolio review (re-scoring, the feature nodes' data alerts, early warning, lines,
    PSI) through the batch path."""
    from fedcredit.bench.rescore import run_rescore_benchmark

    show_result(guarded(lambda: run_rescore_benchmark(accounts, max_ids_per_request=max_ids)),
                as_json)


@bench_app.command("hfl")
def bench_hfl(
    as_json: JsonOpt = False,
    rounds: Annotated[int, typer.Option(help="Rounds per run.")] = 3,
    data: Annotated[Path | None, typer.Option(
        help="CSV (id, y, features) split by rows among three banks; default synthetic.")
    ] = None,
) -> None:
    """Seconds and bytes per round over three banks, with SecAgg+ and without."""
    from fedcredit.bench.hfl import run_hfl_benchmark

    result = guarded(lambda: run_hfl_benchmark(rounds=rounds, data=data))
    if as_json:
        emit_json(result)
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
    console.print(table)
    console.print(f"SecAgg+ round / plain round: {result['secagg_over_plain']:.2f}x")

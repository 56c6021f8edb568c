"""`fedcredit report MODEL`: the bank's validation report of a trained model, as JSON and HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from common.errors import DataValidationError
from fedcredit.cli.operator import InsecureOpt, JsonOpt
from fedcredit.cli.shared import console, emit_json, guarded


def report_cmd(
    model: Annotated[str, typer.Argument(help="Model id (e.g. demo-vlr-v1), or `latest`.")],
    bank: Annotated[str, typer.Option(help="The bank (its node's party name).")],
    consent: Annotated[str, typer.Option(
        help="Consent reference under which the rows are scored (feature nodes log it).")],
    config: Annotated[Path, typer.Option(envvar="FEDCREDIT_NODE_CONFIG",
                                         help="The bank node's TOML config (keys, state).")
                      ] = Path("bank.toml"),
    out: Annotated[Path, typer.Option(help="Folder for report.json and report.html.")
                   ] = Path("model-report"),
    ids: Annotated[Path | None, typer.Option(
        help="Labelled ids to validate on (default: the training job's validation rows).")
    ] = None,
    population: Annotated[Path | None, typer.Option(
        help="Ids of a scoring population to compare with (PSI), scored now "
             "(default: the bank's unlabelled applicants, if any).")] = None,
    population_scores: Annotated[Path | None, typer.Option(
        help="Or: a decisions CSV of `fedcredit score --out` as the scoring population.")
    ] = None,
    segments: Annotated[Path | None, typer.Option(
        help="CSV with `id` and segment columns (tier, credit_white) for breakdowns.")] = None,
    bins: Annotated[int, typer.Option(min=2, max=100, help="Equal-frequency bins.")] = 10,
    policy: Annotated[Path | None, typer.Option(help="Credit policy TOML (points).")] = None,
    purpose: Annotated[str, typer.Option(help="Why the bank scores.")] = "model validation",
    insecure: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Validation report: AUC, KS, Gini, decile table, lift, gains, segments, stability (PSI).

    The rows are scored jointly through the ordinary scoring path (one joint score per
    enterprise, counted against the feature nodes' budgets); the files hold aggregates only.
    """
    from fedcredit.report.bank import ReportRequest, bank_report, write_report
    from fedcredit.scoring import read_ids
    from node.config import load_node_config
    from node.policy import load_policy
    from node.scoring.bank import BankScorer

    def run() -> None:
        cfg = load_node_config(config)
        if cfg.party != bank:
            raise DataValidationError(f"{config} is the config of {cfg.party!r}, not {bank!r}")
        if population is not None and population_scores is not None:
            raise DataValidationError("give at most one of --population and --population-scores")
        scorer = BankScorer(cfg, load_policy(policy),
                            model_id="" if model == "latest" else model, insecure=insecure)
        try:
            wanted = tuple(read_ids(population)) if population is not None else None
            report = bank_report(scorer, ReportRequest(
                consent=consent, purpose=purpose, ids=ids, population=wanted,
                population_name=f"ids in {population.name}" if population else "",
                population_scores=population_scores, segments=segments, bins=bins))
        finally:
            scorer.close()
        json_path, html_path = out / "report.json", out / "report.html"
        write_report(report, json_path, html_path)
        if as_json:
            emit_json({**report, "json_path": str(json_path), "html_path": str(html_path)})
            return
        console.print(f"[bold]{report['model_id']}[/] ({report['algorithm']}): "
                      f"{report['rows_note']}")
        console.print(f"AUC {report['auc']:.4f}  KS {report['ks']:.4f}  "
                      f"Gini {report['gini']:.4f}  bad rate {report['bad_rate']:.2%}")
        table = Table(title="equal-frequency bins, riskiest first")
        for column in ("bin", "rows", "bad rate", "lift", "gains", "KS"):
            table.add_column(column, justify="right")
        for r in report["deciles"]:
            table.add_row(str(r["bin"]), f"{r['rows']:,}", f"{r['bad_rate']:.2%}",
                          f"{r['lift']:.2f}", f"{r['cum_bads']:.1%}", f"{r['ks']:.3f}")
        console.print(table)
        stability = report["stability"]
        console.print(f"stability: PSI {stability['psi']:.4f} ({stability['reading']})"
                      if stability else f"stability: {report['stability_note']}")
        console.print(f"written: {json_path}, {html_path}")

    guarded(run)

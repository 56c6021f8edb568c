"""`fedcredit portfolio import|rescore|alerts|lines`: the bank's book, its reviews and alerts."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from common.errors import DataValidationError
from fedcredit.cli.operator import InsecureOpt, JsonOpt
from fedcredit.cli.shared import console, emit_json, guarded

portfolio_app = typer.Typer(help="The bank's portfolio: lines, reviews, early warnings.",
                            no_args_is_help=True)
ConfigOpt = Annotated[Path, typer.Option(envvar="FEDCREDIT_NODE_CONFIG",
                                         help="The bank node's TOML config (keys, state).")]
SinceOpt = Annotated[str, typer.Option(help="Only from this UTC time on (ISO).")]
ReviewOpt = Annotated[str, typer.Option("--review", help="Only this review's.")]


def _store(config: Path) -> Any:
    from node.config import load_node_config
    from node.portfolio.store import PortfolioStore, store_path

    cfg = load_node_config(config)
    if cfg.role != "label":
        raise DataValidationError(f"{config} is a feature node's config; the portfolio is a "
                                  "bank's")
    return PortfolioStore(store_path(cfg.state_dir))


@portfolio_app.command("import")
def portfolio_import(
    accounts: Annotated[Path, typer.Argument(help="CSV: enterprise_id, line, drawn, grade, "
                                                  "booked_at, expiry[, pd, score].")],
    config: ConfigOpt = Path("bank.toml"),
    warm: Annotated[bool, typer.Option(
        help="Make the booked ids' pseudonyms ahead (blinded, at the coordinator), so the "
             "next review finds them cached.")] = True,
    insecure: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Book (or replace) accounts in the bank's portfolio, and make their pseudonyms ahead."""
    import grpc

    from node.config import load_node_config
    from node.portfolio.store import read_accounts
    from node.scoring.warm import warm_ids

    def run() -> tuple[int, list[str]]:
        rows = read_accounts(accounts)
        store = _store(config)
        try:
            return int(store.book(rows)), [r.enterprise_id for r in rows]
        finally:
            store.close()

    booked, ids = guarded(run)
    made, warning = None, ""
    if warm:
        try:
            made = warm_ids(load_node_config(config), ids, insecure=insecure)
        except Exception as err:  # noqa: BLE001 - booked all the same; the review makes them
            said = err.details() if isinstance(err, grpc.RpcError) else str(err)
            warning = (f"booked, but pseudonyms were not made ahead ({type(err).__name__}: "
                       f"{said}); the next review makes them")
    if as_json:
        emit_json({"booked": booked, "pseudonyms_made": made,
                   **({"warning": warning} if warning else {})})
    else:
        console.print(f"booked {booked:,} accounts" + (
            f"; {made:,} pseudonyms made ahead" if made is not None else ""))
        if warning:
            console.print(f"[yellow]warning:[/] {warning}", highlight=False)


@portfolio_app.command("rescore")
def portfolio_rescore(
    config: ConfigOpt = Path("bank.toml"),
    policy: Annotated[Path | None, typer.Option(help="Credit policy TOML.")] = None,
    model: Annotated[str, typer.Option(help="Model id; default the bank's latest.")] = "",
    consent: Annotated[str, typer.Option(help="Consent reference of the portfolio review.")
                       ] = "portfolio-review",
    every: Annotated[float, typer.Option(help="Seconds between reviews; 0: once.")] = 0.0,
    alerts_jsonl: Annotated[Path | None, typer.Option(
        help="Append alerts as JSON lines here; default <state>/portfolio/alerts.jsonl.")
    ] = None,
    data_alerts: Annotated[bool, typer.Option(
        help="Also ask the feature nodes for their data-alert levels and per-feature PSI.")
    ] = True,
    insecure: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-score every account through the batch path; alerts (score and feature data), line
    changes, re-credit, score PSI and each feature node's per-feature PSI."""
    from node.config import load_node_config
    from node.policy import load_policy
    from node.portfolio.review import rescore
    from node.portfolio.store import PortfolioStore, store_path
    from node.scoring.bank import BankScorer
    from node.scoring.data_alerts import request_data_alerts

    def run() -> None:
        cfg = load_node_config(config)
        store = PortfolioStore(store_path(cfg.state_dir))
        sink = alerts_jsonl or store_path(cfg.state_dir).with_name("alerts.jsonl")
        scorer = BankScorer(cfg, load_policy(policy), model_id=model, insecure=insecure)
        try:
            while True:
                source = ((lambda ids, ref: request_data_alerts(scorer, ids, ref))
                          if data_alerts else None)
                summary = rescore(scorer, store, consent=consent, alerts_jsonl=sink,
                                  data_alerts=source)
                _show_summary(summary, as_json)
                if every <= 0:
                    return
                time.sleep(every)
        finally:
            scorer.close()
            store.close()

    guarded(run)


def _show_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(summary)
        return
    table = Table(title=f"portfolio review {summary['review_id']} ({summary['at']})",
                  show_header=False)
    for key, value in summary.items():
        if key not in ("review_id", "at"):
            table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(table)


@portfolio_app.command("alerts")
def portfolio_alerts(
    config: ConfigOpt = Path("bank.toml"),
    since: SinceOpt = "",
    review: ReviewOpt = "",
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON alert a line.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Early-warning alerts: the tier the bank acts on (type early_warning: tier, action, PD and
    grade before and now, source: score, data or both) and the feature nodes' data alerts (type
    data_warning: aggregate level, source)."""
    def run() -> list[dict[str, Any]]:
        store = _store(config)
        try:
            found: list[dict[str, Any]] = store.alerts(since, review)
            return found
        finally:
            store.close()

    alerts = guarded(run)
    if jsonl:
        sys.stdout.writelines(json.dumps(a) + "\n" for a in alerts)
    elif as_json:
        emit_json(alerts)
    else:
        _table("early warnings", alerts, ("at", "type", "enterprise_id", "tier", "action",
                                          "pd_before", "pd", "grade_before", "grade", "line",
                                          "level", "source"))


@portfolio_app.command("lines")
def portfolio_lines(
    config: ConfigOpt = Path("bank.toml"),
    since: SinceOpt = "",
    review: ReviewOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Line changes made by reviews (cut for deteriorating scores or data, raised for improving
    grades), with what decided each (score, data, both)."""
    def run() -> list[dict[str, Any]]:
        store = _store(config)
        try:
            found: list[dict[str, Any]] = store.line_changes(since, review)
            return found
        finally:
            store.close()

    changes = guarded(run)
    if as_json:
        emit_json(changes)
    else:
        _table("line changes", changes, ("enterprise_id", "change", "source", "grade_before",
                                         "grade", "line_before", "line"))


def _table(title: str, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    table = Table(title=f"{title} ({len(rows):,})")
    for column in columns:
        table.add_column(column)
    for row in rows[:50]:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    console.print(table)
    if len(rows) > 50:
        console.print(f"... {len(rows) - 50:,} more (--json for all)")

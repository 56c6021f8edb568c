"""`fedcredit score`: the bank's joint credit decision for one enterprise or a file of ids."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from common.errors import DataValidationError
from fedcredit.cli.operator import InsecureOpt, JsonOpt
from fedcredit.cli.shared import console, emit_json, guarded


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
    from fedcredit.scoring import decision_row, read_ids, write_decisions
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
            emit_json([decision_row(d) for d in decisions[:1000]])
            return
        table = Table(title=f"joint decisions ({scorer.model_id})")
        for column in ("id", "outcome", "PD", "score", "grade", "credit line", "parties",
                       "reasons"):
            table.add_column(column)
        for d in decisions[:20]:
            decided = d.outcome == "decided"
            table.add_row(d.id, d.outcome if decided else f"[yellow]{d.outcome}[/]",
                          f"{d.probability:.4f}" if decided else "-",
                          "-" if d.score is None else f"{d.score:.0f}", d.grade or "-",
                          "-" if d.credit_line is None else f"{d.credit_line:,.0f}",
                          str(d.parties_covering), d.reason or ", ".join(d.reasons))
        console.print(table)
        if len(decisions) > 20:
            console.print(f"... {len(decisions) - 20:,} more" + (f" in {out}" if out else ""))
        for outcome in ("refer", "refused"):
            named = [d for d in decisions if d.outcome == outcome]
            if named:
                shown = ", ".join(d.id for d in named[:50])
                more = f" and {len(named) - 50:,} more" if len(named) > 50 else ""
                console.print(f"[yellow]{outcome}[/] ({named[0].reason}): {shown}{more}",
                              highlight=False)

    guarded(run)

"""`fedcredit data synth|shift`: synthetic supply-chain data per party; a seeded change."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fedcredit.cli.shared import console, guarded

data_app = typer.Typer(help="Data tools.", no_args_is_help=True)


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


@data_app.command("shift")
def data_shift(
    out: Annotated[Path, typer.Option(help="Folder of a synthetic chain (rewritten in place).")],
    deteriorate: Annotated[float, typer.Option(help="Share of SMEs that deteriorate.")] = 0.05,
    improve: Annotated[float, typer.Option(help="Share of SMEs that improve.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Random seed (reproducible).")] = 7,
) -> None:
    """Change the feature parties' tables: some SMEs deteriorate (orders fall, shipments late,
    filings overdue), some improve, all drift a little."""
    from fedcredit.synth_shift import shift_chain

    result = guarded(lambda: shift_chain(out, deteriorate=deteriorate, improve=improve,
                                         seed=seed))
    console.print(f"{len(result.deteriorated):,} SMEs deteriorated, {len(result.improved):,} "
                  f"improved; rewrote {', '.join(p.name for p in result.rewritten)}")

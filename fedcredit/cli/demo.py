"""`fedcredit demo`: the whole network on this machine, end to end, with a JSON report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedcredit.cli.shared import console, guarded


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
    from fedcredit.demo.run import run_demo

    guarded(lambda: run_demo(report, enterprises=enterprises, seed=seed, workdir=workdir,
                             console=console, banks=banks, hfl_rounds=hfl_rounds))

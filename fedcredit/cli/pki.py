"""`fedcredit pki ...`: certificates for mutual TLS."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedcredit.cli.shared import console, guarded

pki_app = typer.Typer(help="Certificates for mutual TLS.", no_args_is_help=True)


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

"""`fedcredit audit verify`: check an audit log's hash chain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedcredit.cli.exit_codes import ExitCode
from fedcredit.cli.operator import JsonOpt
from fedcredit.cli.shared import console, emit_json, guarded

audit_app = typer.Typer(help="Audit logs.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(
    path: Annotated[Path, typer.Argument(help="An audit.jsonl file.")],
    as_json: JsonOpt = False,
) -> None:
    """Check an audit log's hash chain; report the first broken entry."""
    from common.audit import verify_audit_log

    report = guarded(lambda: verify_audit_log(path))
    if as_json:
        emit_json({"ok": report.ok, "entries": report.entries, "first_bad": report.first_bad,
                   "reason": report.reason})
    elif report.ok:
        console.print(f"[green]ok[/]: {report.entries} entries, chain intact")
    else:
        console.print(f"[red]broken[/] at entry {report.first_bad}: {report.reason}")
    if not report.ok:
        raise typer.Exit(int(ExitCode.AUDIT_BROKEN))

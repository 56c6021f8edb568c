"""`fedcredit help exit-codes`: reference tables for scripts that call fedcredit."""

from __future__ import annotations

import typer
from rich.table import Table

from fedcredit.cli.exit_codes import ExitCode, exit_code_help
from fedcredit.cli.operator import JsonOpt
from fedcredit.cli.shared import console, emit_json

help_app = typer.Typer(help="Reference: exit codes.", no_args_is_help=True)


@help_app.command("exit-codes")
def exit_codes_cmd(as_json: JsonOpt = False) -> None:
    """Every exit code a fedcredit command can end with, and what it means."""
    if as_json:
        emit_json([{"code": int(c), "name": c.name, "help": exit_code_help(c)}
                   for c in ExitCode])
        return
    table = Table(title="fedcredit exit codes")
    for column in ("code", "name", "meaning"):
        table.add_column(column)
    for code in ExitCode:
        table.add_row(str(int(code)), code.name, exit_code_help(code))
    console.print(table)

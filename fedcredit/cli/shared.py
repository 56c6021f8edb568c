"""What every command group shares: consoles, our errors as exit codes, JSON and table output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import grpc
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from common.errors import (
    AuditError,
    DataValidationError,
    FedcreditError,
    ListenError,
    PeerUnavailable,
    ProductionModeError,
    ProtocolError,
    TrustError,
)
from common.rpc import RETRYABLE
from fedcredit.cli.exit_codes import ExitCode

# No emoji codes: a fingerprint such as "CA:CD:B6" would print ":CD:" as a CD emoji.
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)
T = TypeVar("T")

EXIT_OF: list[tuple[type[FedcreditError], ExitCode]] = [
    (DataValidationError, ExitCode.INVALID_DATA),
    (TrustError, ExitCode.TRUST),
    (ProductionModeError, ExitCode.TRUST),
    (PeerUnavailable, ExitCode.UNAVAILABLE),
    (ListenError, ExitCode.CANNOT_LISTEN),
    (ProtocolError, ExitCode.PROTOCOL),
    (AuditError, ExitCode.AUDIT_BROKEN),
]

# A coordinator's refusal of our input (a DataValidationError there) is invalid data here.
RPC_EXIT = {grpc.StatusCode.INVALID_ARGUMENT: ExitCode.INVALID_DATA}


def exit_code_of(err: FedcreditError) -> ExitCode:
    """The exit code of one of our errors (the first matching kind, else FAILED)."""
    return next((code for kind, code in EXIT_OF if isinstance(err, kind)), ExitCode.FAILED)


def guarded(action: Callable[[], T]) -> T:
    """Run a command body; our errors become a clear message and one exit code."""
    try:
        return action()
    except FedcreditError as err:
        err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False,
                          soft_wrap=True)
        raise typer.Exit(int(exit_code_of(err))) from None
    except grpc.RpcError as err:
        unavailable = err.code() in RETRYABLE
        err_console.print(f"[bold red]error:[/] {err.code().name}: {err.details()}",
                          highlight=False)
        code = ExitCode.UNAVAILABLE if unavailable else RPC_EXIT.get(err.code(), ExitCode.PROTOCOL)
        raise typer.Exit(int(code)) from None
    except KeyboardInterrupt:
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


def emit_json(payload: Any) -> None:
    """One JSON document on stdout (what every `--json` prints)."""
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")


def show_result(result: dict[str, Any], as_json: bool) -> None:
    """A benchmark's figures: one JSON object with --json, a readable table otherwise."""
    if as_json:
        emit_json(result)
        return
    table = Table(show_header=False)
    for key, value in result.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)


JsonLogsOpt = Annotated[bool, typer.Option("--json-logs", help="JSON log lines.")]

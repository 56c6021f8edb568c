"""One table of the CLI's exit codes, each with the help text `fedcredit help exit-codes` prints."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of every `fedcredit` command."""

    OK = 0
    FAILED = 1
    USAGE = 2
    INVALID_DATA = 10
    TRUST = 20
    UNAVAILABLE = 30
    CANNOT_LISTEN = 31
    PROTOCOL = 40
    AUDIT_BROKEN = 50
    INTERRUPTED = 130


EXIT_CODE_HELP: dict[ExitCode, str] = {
    ExitCode.OK: "The command did what it was asked.",
    ExitCode.FAILED: "A fedcredit error without a more specific code; the message says what "
                     "went wrong.",
    ExitCode.USAGE: "Unknown command, option or argument value (typer's usage error); see "
                    "`fedcredit <command> --help`.",
    ExitCode.INVALID_DATA: "A config file, job file, id list or data table is invalid; the "
                           "message names the file and the field or rows at fault.",
    ExitCode.TRUST: "A peer's certificate or identity was refused (mutual TLS, CA, name "
                    "mismatch); check the PKI folder and the --as identity.",
    ExitCode.UNAVAILABLE: "A node, the coordinator or a Flower process could not be reached "
                          "or did not answer in time; check that it runs and its address.",
    ExitCode.CANNOT_LISTEN: "A node or the coordinator could not listen on its address (port "
                            "already in use, address not on this machine, no permission); the "
                            "message names the `listen` setting to change.",
    ExitCode.PROTOCOL: "A peer refused a request or broke the protocol (wrong job, wrong "
                       "party, refused setting); the message carries the peer's reason.",
    ExitCode.AUDIT_BROKEN: "An audit log's hash chain is broken; `fedcredit audit verify` "
                           "names the first bad entry.",
    ExitCode.INTERRUPTED: "Stopped by Ctrl-C or SIGTERM; the processes it started are stopped.",
}


def exit_code_help(code: ExitCode) -> str:
    """The help text of ``code`` (every code has one; a test checks it)."""
    return EXIT_CODE_HELP[code]

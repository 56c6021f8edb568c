"""One table of the CLI's exit codes."""

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of every `fedcredit` command."""

    OK = 0
    FAILED = 1
    USAGE = 2
    INVALID_DATA = 10
    INVALID_CONFIG = 11
    TRUST = 20
    UNAVAILABLE = 30
    PROTOCOL = 40
    AUDIT_BROKEN = 50
    INTERRUPTED = 130

"""Tie a child process's life to its parent's, so a demo or test never leaves orphans."""

from __future__ import annotations

import ctypes
import os
import signal

PARENT_ENV = "FEDCREDIT_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """If started by a fedcredit launcher, get SIGTERM when the launcher dies.

    Done by the child itself at start-up rather than in a `preexec_fn`: forking a
    multi-threaded parent (gRPC) and running Python before exec can abort the child.
    """
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        return
    if os.getppid() != int(parent):  # the launcher died before we got here
        os._exit(1)


def exec_bound(argv: list[str]) -> None:
    """Bind to the launcher, then become `argv` (the binding survives exec)."""
    die_with_parent()
    os.execvp(argv[0], argv)


def bound_command(argv: list[str]) -> list[str]:
    """`argv` wrapped so that it dies with the calling process (set PARENT_ENV in its env)."""
    import sys

    return [sys.executable, "-m", "common.lifecycle", *argv]


if __name__ == "__main__":
    import sys

    exec_bound(sys.argv[1:])

"""The one process launcher: children log to their file, die as a group, and report exits."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from common.errors import PeerUnavailable
from fedcredit.launcher import ChildProcesses, free_port

# A child that starts a grandchild in its own process group, prints both pids, then waits.
PARENT = ("import subprocess, sys, time; "
          "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
          "print('pids', g.pid, flush=True); time.sleep(60)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(path: Path, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path} after {timeout}s")


def test_stop_ends_the_child_and_what_it_started(tmp_path: Path) -> None:
    children = ChildProcesses(tmp_path / "logs")
    child = children.spawn("worker", [sys.executable, "-c", PARENT])
    line = _wait_for(children.log_path("worker"), "pids")
    grandchild = int(line.split()[1])

    children.stop("worker", grace=5.0)

    assert child.poll() is not None
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)
    assert "worker" not in children.processes


def test_stop_all_stops_the_last_ones_after_the_others(tmp_path: Path) -> None:
    children = ChildProcesses(tmp_path / "logs")
    procs = [children.spawn(name, [sys.executable, "-c", "import time; time.sleep(60)"])
             for name in ("coordinator", "a", "b")]

    children.stop_all(last=["coordinator"])

    assert all(p.poll() is not None for p in procs)
    assert children.processes == {}


def test_check_alive_names_the_dead_child_with_its_log(tmp_path: Path) -> None:
    children = ChildProcesses(tmp_path / "logs")
    children.spawn("node", [sys.executable, "-c", "print('bad table'); raise SystemExit(3)"])
    children.processes["node"].wait(timeout=20)

    with pytest.raises(PeerUnavailable, match=r"node exited with code 3:\n.*bad table"):
        children.check_alive()
    children.stop_all()


def test_a_child_gets_the_parent_pid_and_a_signal_reaches_its_group(tmp_path: Path) -> None:
    children = ChildProcesses(tmp_path / "logs")
    code = "import os, time; print('parent', os.environ['FEDCREDIT_PARENT_PID'], flush=True); " \
           "time.sleep(60)"
    proc = children.spawn("x", [sys.executable, "-c", code])
    assert f"parent {os.getpid()}" in _wait_for(children.log_path("x"), "parent")

    children.stop("x", sig=signal.SIGKILL, grace=5.0)

    assert proc.returncode == -signal.SIGKILL


def test_free_port_is_a_bindable_loopback_port() -> None:
    assert 1024 <= free_port() < 65536

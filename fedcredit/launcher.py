"""The one process launcher: child processes on loopback that die with us, and a local network.

`ChildProcesses` starts each child bound to this process (it gets SIGTERM if we die), in its own
process group with its own log file, and stops the whole group (so nothing a child started is
left behind). `LocalNetwork` uses it for a coordinator and nodes; fedcredit/hfl/federation.py for
Flower's SuperLink and SuperNodes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import tomli_w

from common.errors import PeerUnavailable
from common.lifecycle import PARENT_ENV, bound_command
from common.production import PRODUCTION_ENV
from crypto.enrol import certificate_fingerprint
from crypto.pki import init_pki
from fedcredit.connect import coordinator_stub
from proto.fedcredit.v1 import coordinator_pb2, coordinator_pb2_grpc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChildProcesses:
    """Named child processes, each in its own process group with a log file in ``log_dir``."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def spawn(self, name: str, argv: list[str], *, env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` as ``name``, output appended to its log, bound to this process."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        child_env = {**(env if env is not None else os.environ), "PYTHONUNBUFFERED": "1",
                     PARENT_ENV: str(os.getpid())}
        with self.log_path(name).open("ab") as log:
            # No preexec_fn: forking a parent with gRPC threads and running Python before exec
            # can abort the child; the wrapper binds to us and then execs the command.
            proc = subprocess.Popen(bound_command(argv), stdout=log, stderr=subprocess.STDOUT,
                                    env=child_env, cwd=cwd, start_new_session=True)
        self.processes[name] = proc
        return proc

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def check_alive(self, names: Sequence[str] | None = None) -> None:
        """Raise with the tail of its log if any of ``names`` (default: all) has exited."""
        for name in list(self.processes) if names is None else names:
            proc = self.processes.get(name)
            code = proc.poll() if proc is not None else None
            if code is not None:
                raise PeerUnavailable(f"{name} exited with code {code}:\n{self.log_tail(name)}")

    def stop(self, name: str, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
        """Signal ``name``'s process group, wait up to ``grace`` s, then SIGKILL the group."""
        proc = self.processes.pop(name, None)
        if proc is None:
            return
        for signum in (sig, signal.SIGKILL):  # SIGKILL also ends what the child left behind
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signum)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
        proc.wait()

    def stop_all(self, last: Sequence[str] = ()) -> None:
        """Stop every child: all but ``last`` together first, then ``last`` in order."""
        first = [n for n in self.processes if n not in last]
        for name in first:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.processes[name].pid, signal.SIGTERM)
        for name in [*first, *last]:
            self.stop(name)


def write_toml(config: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(config))


@dataclass(frozen=True)
class PartySpec:
    """A node to start: its name, role, the `[data]` table of its config and any other tables
    of it (`settings`, e.g. `{"scoring": {"max_ids_per_request": 50}}`)."""

    name: str
    role: str
    data: dict[str, Any]
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class LocalNetwork:
    """Coordinator plus nodes as child processes; a context manager that never leaves orphans.

    By default one folder (`workdir/pki`, the demo shortcut) holds the CA and every party's key.
    With `party_pki` each party (nodes, "coordinator", "operator") uses its own folder holding
    `ca.crt`, `<name>.crt` and `<name>.key`, made with `pki request` / `pki sign`. Each node
    pins every other node's certificate fingerprint, or exactly `pins[node]` when given.
    """

    workdir: Path
    parties: Sequence[PartySpec]
    insecure: bool = False
    python: str = sys.executable
    coordinator_address: str = ""
    party_pki: Mapping[str, Path] | None = None
    pins: Mapping[str, Mapping[str, str]] | None = None
    children: ChildProcesses = field(init=False)

    def __post_init__(self) -> None:
        self.children = ChildProcesses(self.workdir / "logs")

    @property
    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        return self.children.processes

    @property
    def pki_dir(self) -> Path:
        return self.workdir / "pki"

    def pki_folder(self, name: str) -> Path:
        """The folder with `name`'s certificate and key and the CA certificate."""
        return (self.party_pki[name] if self.party_pki is not None else self.pki_dir).resolve()

    def fingerprint(self, name: str) -> str:
        return certificate_fingerprint((self.pki_folder(name) / f"{name}.crt").read_bytes())

    def _pins(self, node: str) -> dict[str, str]:
        if self.pins is not None:
            return dict(self.pins.get(node, {}))
        return {p.name: self.fingerprint(p.name) for p in self.parties if p.name != node}

    def _tls(self, name: str) -> dict[str, str]:
        folder = self.pki_folder(name)
        return {"ca": str(folder / "ca.crt"), "cert": str(folder / f"{name}.crt"),
                "key": str(folder / f"{name}.key")}

    def config_path(self, name: str) -> Path:
        return self.workdir / "config" / f"{name}.toml"

    def log_path(self, name: str) -> Path:
        return self.children.log_path(name)

    def prepare(self) -> None:
        """Mint certificates (demo folder) and write every process's config, pins included."""
        for sub in ("config", "logs", "state"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        if self.party_pki is None and not (self.pki_dir / "ca.crt").exists():
            init_pki(self.pki_dir, [p.name for p in self.parties])
        self.coordinator_address = f"127.0.0.1:{free_port()}"
        write_toml({
            "listen": self.coordinator_address,
            "state_dir": str((self.workdir / "state" / "coordinator").resolve()),
            "parties": {p.name: p.role for p in self.parties},
            "tls": self._tls("coordinator"),
        }, self.config_path("coordinator"))
        for party in self.parties:
            write_toml({
                "party": party.name, "role": party.role,
                "listen": f"127.0.0.1:{free_port()}", "coordinator": self.coordinator_address,
                "state_dir": str((self.workdir / "state" / party.name).resolve()),
                "tls": self._tls(party.name),
                "data": party.data,
                "trust": {"peers": self._pins(party.name)},
                **party.settings,
            }, self.config_path(party.name))

    def _spawn(self, name: str, args: list[str]) -> None:
        cmd = [self.python, "-m", "fedcredit.cli.main", *args,
               "--config", str(self.config_path(name))]
        env = dict(os.environ)
        if self.insecure:  # a development network: production mode would refuse --insecure
            cmd.append("--insecure")
            env[PRODUCTION_ENV] = "0"
        self.children.spawn(name, cmd, env=env)

    def start_coordinator(self) -> None:
        self._spawn("coordinator", ["coordinator", "serve"])

    def start_node(self, name: str) -> None:
        self._spawn(name, ["node", "serve"])

    def stub(self) -> coordinator_pb2_grpc.CoordinatorServiceStub:
        """The operator's stub to this network's coordinator (mutual TLS unless insecure)."""
        return coordinator_stub(self.coordinator_address, self.pki_folder("operator"), "operator",
                                self.insecure)

    def start(self, timeout: float = 90.0,
              progress: Callable[[str], None] | None = None) -> None:
        """Start everything and wait until every node is registered and serving."""
        self.prepare()
        self.start_coordinator()
        for party in self.parties:
            self.start_node(party.name)
        self.wait_serving([p.name for p in self.parties], timeout, progress)

    def wait_serving(self, names: Sequence[str], timeout: float = 90.0,
                     progress: Callable[[str], None] | None = None) -> None:
        deadline = time.monotonic() + timeout
        stub = self.stub()
        seen: set[str] = set()
        while True:
            self.check_alive()
            try:
                reply = stub.ListNodes(coordinator_pb2.ListNodesRequest(), timeout=10)
                serving = {n.party for n in reply.nodes if n.health == "SERVING"}
            except grpc.RpcError:
                serving = set()
            for name in sorted(serving & set(names) - seen):
                seen.add(name)
                if progress:
                    progress(name)
            if set(names) <= serving:
                return
            if time.monotonic() > deadline:
                missing = sorted(set(names) - serving)
                raise PeerUnavailable(f"nodes not serving after {timeout:.0f}s: "
                                      f"{', '.join(missing)} (logs in {self.workdir / 'logs'})")
            time.sleep(0.3)

    def check_alive(self) -> None:
        """Raise with the tail of its log if any process has exited."""
        self.children.check_alive()

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        self.children.stop(name, sig, grace=timeout)

    def restart_node(self, name: str, timeout: float = 90.0) -> None:
        """Stop a node and start it again (it re-reads its data source at start-up)."""
        self.stop_process(name)
        self.start_node(name)
        self.wait_serving([name], timeout)

    def reload_nodes(self, names: Sequence[str], timeout: float = 120.0) -> dict[str, str]:
        """Have each of `names` re-read its data source now, live (the coordinator's
        ReloadNode, as `fedcredit nodes reload`); the outcome per node."""
        stub = self.stub()
        return {name: stub.ReloadNode(coordinator_pb2.ReloadNodeRequest(party=name),
                                      timeout=timeout).outcome for name in names}

    def stop(self) -> None:
        self.children.stop_all(last=["coordinator"])

    def __enter__(self) -> LocalNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

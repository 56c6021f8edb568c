"""Start a coordinator and nodes as separate processes on loopback, and stop them all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import tomli_w

from common.errors import PeerUnavailable
from common.lifecycle import PARENT_ENV
from crypto.pki import init_pki
from fedcredit.cli.operator import coordinator_stub
from proto.fedcredit.v1 import coordinator_pb2, coordinator_pb2_grpc


def _write_toml(config: dict[str, Any], path: Path) -> None:
    path.write_text(tomli_w.dumps(config))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class PartySpec:
    """A node to start: its name, role and the `[data]` table of its config."""

    name: str
    role: str
    data: dict[str, Any]


@dataclass
class LocalNetwork:
    """Coordinator plus nodes as child processes; a context manager that never leaves orphans."""

    workdir: Path
    parties: Sequence[PartySpec]
    insecure: bool = False
    python: str = sys.executable
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    coordinator_address: str = ""

    @property
    def pki_dir(self) -> Path:
        return self.workdir / "pki"

    def config_path(self, name: str) -> Path:
        return self.workdir / "config" / f"{name}.toml"

    def log_path(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def prepare(self) -> None:
        """Mint certificates and write every process's config file."""
        for sub in ("config", "logs", "state"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        if not (self.pki_dir / "ca.crt").exists():
            init_pki(self.pki_dir, [p.name for p in self.parties])
        port = free_port()
        self.coordinator_address = f"127.0.0.1:{port}"
        pki = self.pki_dir.resolve()
        _write_toml({
            "listen": self.coordinator_address,
            "state_dir": str((self.workdir / "state" / "coordinator").resolve()),
            "parties": [p.name for p in self.parties],
            "tls": {"ca": str(pki / "ca.crt"), "cert": str(pki / "coordinator.crt"),
                    "key": str(pki / "coordinator.key")},
        }, self.config_path("coordinator"))
        for party in self.parties:
            _write_toml({
                "party": party.name, "role": party.role,
                "listen": f"127.0.0.1:{free_port()}", "coordinator": self.coordinator_address,
                "state_dir": str((self.workdir / "state" / party.name).resolve()),
                "tls": {"ca": str(pki / "ca.crt"), "cert": str(pki / f"{party.name}.crt"),
                        "key": str(pki / f"{party.name}.key")},
                "data": party.data,
            }, self.config_path(party.name))

    def _spawn(self, name: str, args: list[str]) -> None:
        cmd = [self.python, "-m", "fedcredit.cli.main", *args,
               "--config", str(self.config_path(name))]
        if self.insecure:
            cmd.append("--insecure")
        log = self.log_path(name).open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid())}
        self.processes[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                env=env)
        log.close()

    def start_coordinator(self) -> None:
        self._spawn("coordinator", ["coordinator", "serve"])

    def start_node(self, name: str) -> None:
        self._spawn(name, ["node", "serve"])

    def stub(self) -> coordinator_pb2_grpc.CoordinatorServiceStub:
        return coordinator_stub(self.coordinator_address, self.pki_dir, "operator", self.insecure)

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
        for name, proc in self.processes.items():
            code = proc.poll()
            if code is not None:
                tail = self.log_path(name).read_text(errors="replace")[-3000:]
                raise PeerUnavailable(f"{name} exited with code {code}:\n{tail}")

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        proc = self.processes.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        names = [n for n in self.processes if n != "coordinator"]
        for name in names:
            proc = self.processes[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name in names:
            self.stop_process(name)
        self.stop_process("coordinator")

    def __enter__(self) -> LocalNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

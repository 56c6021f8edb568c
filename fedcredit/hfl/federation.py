"""Flower's Deployment Engine on loopback: a SuperLink and one SuperNode per bank, then stop.

One SuperLink (the coordinator) and one SuperNode per bank run as separate processes on loopback
ports, over TLS with our CA (the SuperLink presents the coordinator's certificate), with SuperNode
authentication on (an ECDSA P-384 key per bank, registered before the bank connects). `flwr run`
submits the app in models/hfl/app with the launcher's ServerApp and ClientApp
(fedcredit/hfl/server_app.py and client_app.py: the production ones plus timing and test
capture); the ServerApp writes progress and a JSON result file that this module follows.
Processes are started and stopped by fedcredit/launcher.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import tomli_w

from common.errors import PeerUnavailable, ProtocolError
from crypto.flower_keys import SuperNodeKey, mint_supernode_key
from crypto.pki import init_pki
from fedcredit.hfl.job import BankSpec, HflJob
from fedcredit.hfl.server_app import CAPTURE_KEY
from fedcredit.launcher import ChildProcesses, free_port

APP_DIR = Path(__file__).resolve().parents[2] / "models" / "hfl" / "app"
CLIENT_APP = "fedcredit.hfl.client_app:app"
"""The ClientApp the local federation runs: the bank's, plus benchmark timing and test capture."""
SERVER_APP = "fedcredit.hfl.server_app:app"
"""The ServerApp the local federation runs: the coordinator's, plus timing and test capture."""
CONNECTION = "fedcredit"
Progress = Callable[[dict[str, Any]], None]


class Federation:
    """A SuperLink and one SuperNode per bank on loopback; use as a context manager."""

    def __init__(self, workdir: Path, banks: Sequence[BankSpec], *, require_secagg: bool = True,
                 capture_dir: Path | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self.banks = list(banks)
        self.require_secagg = require_secagg
        self.capture_dir = capture_dir
        self.pki = self.workdir / "pki"
        self.port = 0
        self.children = ChildProcesses(self.workdir / "logs")
        self.keys: dict[str, SuperNodeKey] = {}
        self.node_ids: dict[str, int] = {}
        self.bin = Path(sys.executable).parent

    @property
    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        return self.children.processes

    # set-up ---------------------------------------------------------------------------------
    def _env(self, home: str) -> dict[str, str]:
        flwr_home = self.workdir / "flwr" / home
        flwr_home.mkdir(parents=True, exist_ok=True)
        return {**os.environ, "FLWR_HOME": str(flwr_home), "FLWR_DISABLE_UPDATE_CHECK": "1",
                "FLWR_TELEMETRY_ENABLED": "0", "PYTHONUNBUFFERED": "1",
                "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"}

    def _spawn(self, name: str, cmd: list[str], home: str) -> None:
        self.children.spawn(name, cmd, env=self._env(home), cwd=self.workdir)

    def _flwr(self, args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / "flwr"), *args], env=self._env("cli"),
                              cwd=self.workdir, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def start(self, timeout: float = 60.0) -> None:
        """Mint keys, start the SuperLink, register every bank's key, start the SuperNodes."""
        (self.workdir / "keys").mkdir(parents=True, exist_ok=True)
        if not (self.pki / "ca.crt").exists():
            init_pki(self.pki, [b.name for b in self.banks])
        self.port = free_port()
        self._spawn("superlink", [
            str(self.bin / "flower-superlink"),
            "--ssl-certfile", str(self.pki / "coordinator.crt"),
            "--ssl-keyfile", str(self.pki / "coordinator.key"),
            "--ssl-ca-certfile", str(self.pki / "ca.crt"),
            "--enable-supernode-auth", "--disable-runtime-dependency-installation",
            "--host", "127.0.0.1", "--port", str(self.port),
        ], "superlink")
        cli_home = self.workdir / "flwr" / "cli"
        cli_home.mkdir(parents=True, exist_ok=True)
        (cli_home / "config.toml").write_text(tomli_w.dumps({"superlink": {
            "default": CONNECTION,
            CONNECTION: {"address": f"127.0.0.1:{self.port}",
                         "root-certificates": str(self.pki / "ca.crt")},
        }}))
        self._wait_port(timeout)
        for bank in self.banks:
            self.keys[bank.name] = mint_supernode_key(self.workdir / "keys", bank.name)
            self.node_ids[bank.name] = self._register(self.keys[bank.name], timeout)
            self.start_bank(bank.name)

    def _wait_port(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive("superlink")
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise PeerUnavailable(f"SuperLink did not listen on port {self.port} within {timeout}s")

    def _register(self, key: SuperNodeKey, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            done = self._flwr(["supernode", "register", str(key.public_key), CONNECTION,
                               "--name", key.name, "--format", "json"])
            try:
                reply = json.loads(done.stdout[done.stdout.index("{"):])
                if reply.get("success"):
                    return int(reply["node-id"])
            except ValueError:
                pass
            if time.monotonic() > deadline:
                raise PeerUnavailable(f"could not register {key.name}'s SuperNode key: "
                                      f"{(done.stdout + done.stderr).strip()[-500:]}")
            time.sleep(1.0)

    def start_bank(self, name: str) -> None:
        """Start (or restart) the bank's SuperNode with its registered key."""
        bank = next(b for b in self.banks if b.name == name)
        values = {**bank.node_config_args(), "require-secagg": self.require_secagg}
        if self.capture_dir is not None:
            values["capture-dir"] = str(self.capture_dir)
        node_config = " ".join(f"{k}={json.dumps(v)}" for k, v in values.items())
        self._spawn(name, [
            str(self.bin / "flower-supernode"),
            "--superlink", f"127.0.0.1:{self.port}",
            "--root-certificates", str(self.pki / "ca.crt"),
            "--auth-supernode-private-key", str(self.keys[name].private_key),
            "--node-config", node_config,
            "--port", str(free_port()),
        ], name)

    def restart_bank(self, name: str, timeout: float = 180.0) -> None:
        """Start the bank's SuperNode again until the SuperLink lets it back in.

        The SuperLink refuses a key whose node it still counts as alive (until two missed
        heartbeats, about 60 s, after a crash), so the start is retried until it connects.
        """
        log_path = self.children.log_path(name)
        deadline = time.monotonic() + timeout
        while True:
            offset = log_path.stat().st_size if log_path.exists() else 0
            self.start_bank(name)
            while self.processes[name].poll() is None:
                with log_path.open("rb") as f:
                    f.seek(offset)
                    if b"SuperNode ID" in f.read():
                        return
                if time.monotonic() > deadline:
                    raise PeerUnavailable(f"{name}'s SuperNode did not rejoin in {timeout}s")
                time.sleep(0.5)
            self.children.stop(name, signal.SIGKILL, grace=2.0)
            if time.monotonic() > deadline:
                raise PeerUnavailable(f"{name}'s SuperNode did not rejoin in {timeout}s")
            time.sleep(3.0)

    def kill_bank(self, name: str) -> None:
        """SIGKILL the bank's SuperNode and everything it started (a crash)."""
        self.children.stop(name, signal.SIGKILL, grace=5.0)

    def check_alive(self, name: str = "superlink") -> None:
        self.children.check_alive([name])

    def stop(self) -> None:
        """Stop every process this federation started (SuperNodes first)."""
        for name in [n for n in self.processes if n != "superlink"] + ["superlink"]:
            self.children.stop(name, grace=5.0)

    def __enter__(self) -> Federation:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # runs -----------------------------------------------------------------------------------
    def _app_dir(self) -> Path:
        """The app folder `flwr run` submits: models/hfl/app with the launcher's apps."""
        app_dir = self.workdir / "app"
        if not app_dir.exists():
            shutil.copytree(APP_DIR, app_dir, ignore=shutil.ignore_patterns("__pycache__"))
            manifest = app_dir / "pyproject.toml"
            project = tomllib.loads(manifest.read_text())
            flwr_app = project["tool"]["flwr"]["app"]
            flwr_app["components"] = {"serverapp": SERVER_APP, "clientapp": CLIENT_APP}
            flwr_app["config"][CAPTURE_KEY] = ""  # Flower drops run-config keys not listed here
            manifest.write_text(tomli_w.dumps(project))
        return app_dir

    def submit(self, job: HflJob, *, features: int, max_weight: float, run_dir: Path,
               capture: bool = False, audit_path: Path | None = None) -> Path:
        """`flwr run` the app with this job's run config; return the result file to wait for."""
        run_dir.mkdir(parents=True, exist_ok=True)
        app_dir = self._app_dir()
        result = run_dir / "result.json"
        run_config: dict[str, Any] = {
            "rounds": job.rounds, "local-epochs": job.local_epochs, "lr": job.lr,
            "batch-size": job.batch_size, "l2": job.l2, "holdout": job.holdout,
            "seed": job.seed, "banks": len(job.banks), "min-banks": job.min_banks,
            "features": features, "secagg": job.secagg,
            "secagg-threshold": job.secagg_threshold, "max-weight": float(max_weight),
            "stage-timeout": job.stage_timeout, "job-id": job.job_id,
            "result-path": str(result), "progress-path": str(run_dir / "progress.jsonl"),
            "audit-path": str(audit_path or ""),
            CAPTURE_KEY: str(self.capture_dir) if capture and self.capture_dir else "",
        }
        if job.dp is not None:
            run_config.update({"dp-noise": job.dp.noise_multiplier,
                               "dp-clip": job.dp.clipping_norm, "dp-delta": job.dp.delta})
        config_path = run_dir / "run-config.toml"
        config_path.write_text(tomli_w.dumps(run_config))
        done = self._flwr(["run", str(app_dir), CONNECTION, "--run-config", str(config_path),
                           "--format", "json"], timeout=120)
        if done.returncode != 0 or '"success": true' not in done.stdout:
            raise PeerUnavailable(f"flwr run failed: {(done.stdout + done.stderr).strip()[-800:]}")
        return result

    def follow(self, run_dir: Path, *, deadline: float,
               progress: Progress | None = None) -> dict[str, Any]:
        """Pass progress events on as they come; return the ServerApp's result."""
        progress_path, result_path = run_dir / "progress.jsonl", run_dir / "result.json"
        seen = 0
        while True:
            if progress_path.exists():
                lines = progress_path.read_text().splitlines()
                for line in lines[seen:]:
                    if progress is not None and line.strip():
                        progress(json.loads(line))
                seen = len(lines)
            if result_path.exists():
                result: dict[str, Any] = json.loads(result_path.read_text())
                if "error" in result:
                    raise ProtocolError(f"the ServerApp stopped: {result['error']}")
                return result
            self.check_alive("superlink")
            if time.monotonic() > deadline:
                raise PeerUnavailable(f"horizontal training did not finish in time (see "
                                      f"{self.workdir / 'logs'})")
            time.sleep(0.2)



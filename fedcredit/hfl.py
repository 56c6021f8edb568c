"""Horizontal training on Flower's Deployment Engine: start SuperLink and SuperNodes, run, stop.

One SuperLink (the coordinator) and one SuperNode per bank run as separate processes on loopback
ports, over TLS with our CA (the SuperLink presents the coordinator's certificate), with SuperNode
authentication on (an ECDSA P-384 key per bank, registered before the bank connects). `flwr run`
submits the app in models/hfl/app; the ServerApp writes progress and a JSON result file that this
module follows. Every process gets its own process group and dies with its parent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tomli_w
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.errors import DataValidationError, PeerUnavailable, ProtocolError
from common.lifecycle import PARENT_ENV, bound_command
from crypto.flower_keys import SuperNodeKey, mint_supernode_key
from crypto.pki import init_pki
from fedcredit.network import free_port
from models.hfl.centralized import train_centralized
from models.hfl.model import HyperParams
from models.hfl.server_app import MIN_SECAGG_BANKS
from node.datasource import load_table
from node.hfl_client import data_config_from

APP_DIR = Path(__file__).resolve().parent.parent / "models" / "hfl" / "app"
CONNECTION = "fedcredit"
Progress = Callable[[dict[str, Any]], None]


class BankSpec(BaseModel):
    """One bank: its name and its data (a node TOML config, or a table file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    node_config: Path | None = None
    table: Path | None = None
    id_column: str = "id"
    label_column: str = "default"
    id_format: Literal["uscc", "any"] = "uscc"

    @model_validator(mode="after")
    def _one_source(self) -> BankSpec:
        if (self.node_config is None) == (self.table is None):
            raise ValueError(f"bank {self.name}: give exactly one of node_config or table")
        return self

    def node_config_args(self) -> dict[str, Any]:
        """The key/values this bank's SuperNode gets as --node-config."""
        if self.node_config is not None:
            return {"bank": self.name, "node-config": str(self.node_config.resolve())}
        assert self.table is not None
        return {"bank": self.name, "table": str(self.table.resolve()),
                "id-column": self.id_column, "label-column": self.label_column,
                "id-format": self.id_format}


class DpSpec(BaseModel):
    """Central differential privacy: Gaussian noise at the coordinator, clipping at each bank."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    noise_multiplier: float = Field(gt=0)
    clipping_norm: float = Field(default=1.0, gt=0)
    delta: float = Field(default=1e-5, gt=0, lt=1)


class HflJob(BaseModel):
    """A horizontal training job (the `train hfl --config job.toml` file, validated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    banks: list[BankSpec] = Field(min_length=2)
    rounds: int = Field(default=10, ge=1)
    local_epochs: int = Field(default=1, ge=1)
    lr: float = Field(default=0.5, gt=0)
    batch_size: int = Field(default=0, ge=0)
    """0 = full batch."""
    l2: float = Field(default=0.0, ge=0)
    holdout: float = Field(default=0.2, gt=0, lt=1)
    seed: int = Field(default=0, ge=0)
    secagg: bool = True
    secagg_threshold: float = Field(default=0.67, gt=0, le=1)
    stage_timeout: float = Field(default=120.0, gt=0)
    dp: DpSpec | None = None
    job_id: str = "hfl"
    min_banks: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _distinct_banks(self) -> HflJob:
        names = [b.name for b in self.banks]
        if len(set(names)) != len(names):
            raise ValueError("bank names must be distinct")
        return self

    def check_privacy(self) -> None:
        """Refuse secure aggregation over two banks without DP (each would read the other's)."""
        if self.secagg and len(self.banks) < MIN_SECAGG_BANKS and self.dp is None:
            raise ProtocolError(
                f"refusing secure aggregation over {len(self.banks)} banks without differential "
                "privacy: from the sum each bank reads the other's update. Add banks (at least "
                f"{MIN_SECAGG_BANKS}) or turn on differential privacy (the job's dp table)"
            )

    def hyper_params(self) -> HyperParams:
        return HyperParams(local_epochs=self.local_epochs, lr=self.lr,
                           batch_size=self.batch_size, l2=self.l2)


def load_job(path: Path) -> HflJob:
    """Read a job TOML file; relative data paths are taken relative to its folder.

    Example::

        rounds = 10            # also: local_epochs, lr, batch_size (0 = full), secagg, ...
        [[banks]]
        name = "bank-1"
        node_config = "bank_1.toml"        # the bank's node config, or a table:
        [[banks]]
        name = "bank-2"
        table = "bank_2.csv"
        label_column = "y"
        id_format = "any"
        [dp]                               # optional: central DP
        noise_multiplier = 1.0
        clipping_norm = 1.0
    """
    import tomllib

    from pydantic import ValidationError

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise DataValidationError(f"job config {path}: {err}") from err
    for bank in raw.get("banks", []):
        for key in ("node_config", "table"):
            if key in bank and not Path(bank[key]).is_absolute():
                bank[key] = str(path.parent / bank[key])
    try:
        return HflJob.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in err.errors(include_url=False))
        raise DataValidationError(f"job config {path}: {problems}") from err


# processes ----------------------------------------------------------------------------------
def _kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
                grace: float = 5.0) -> None:
    """Signal the child's whole process group; SIGKILL what is left after ``grace`` seconds."""
    for signum in (sig, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)


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
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.keys: dict[str, SuperNodeKey] = {}
        self.node_ids: dict[str, int] = {}
        self.bin = Path(sys.executable).parent

    # set-up ---------------------------------------------------------------------------------
    def _env(self, home: str) -> dict[str, str]:
        flwr_home = self.workdir / "flwr" / home
        flwr_home.mkdir(parents=True, exist_ok=True)
        return {**os.environ, "FLWR_HOME": str(flwr_home), "FLWR_DISABLE_UPDATE_CHECK": "1",
                "FLWR_TELEMETRY_ENABLED": "0", "PYTHONUNBUFFERED": "1",
                "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"}

    def _spawn(self, name: str, cmd: list[str], home: str) -> None:
        log_path = self.workdir / "logs" / f"{name}.log"
        with log_path.open("ab") as log:
            # No preexec_fn: forking a parent with gRPC threads and running Python before exec
            # can abort the child; the wrapper binds to us and then execs the command.
            env = {**self._env(home), PARENT_ENV: str(os.getpid())}
            self.processes[name] = subprocess.Popen(
                bound_command(cmd), stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=self.workdir, start_new_session=True)

    def _flwr(self, args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / "flwr"), *args], env=self._env("cli"),
                              cwd=self.workdir, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def start(self, timeout: float = 60.0) -> None:
        """Mint keys, start the SuperLink, register every bank's key, start the SuperNodes."""
        for sub in ("logs", "keys"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
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
        log_path = self.workdir / "logs" / f"{name}.log"
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
            _kill_group(self.processes.pop(name), signal.SIGKILL, grace=2.0)
            if time.monotonic() > deadline:
                raise PeerUnavailable(f"{name}'s SuperNode did not rejoin in {timeout}s")
            time.sleep(3.0)

    def kill_bank(self, name: str) -> None:
        """SIGKILL the bank's SuperNode and everything it started (a crash, for tests)."""
        _kill_group(self.processes.pop(name), signal.SIGKILL, grace=5.0)

    def check_alive(self, name: str = "superlink") -> None:
        proc = self.processes.get(name)
        if proc is not None and proc.poll() is not None:
            tail = (self.workdir / "logs" / f"{name}.log").read_text(errors="replace")[-1500:]
            raise PeerUnavailable(f"{name} exited with code {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        """Stop every process this federation started (SuperNodes first)."""
        for name in [n for n in self.processes if n != "superlink"] + ["superlink"]:
            proc = self.processes.pop(name, None)
            if proc is not None:
                _kill_group(proc)

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
    def submit(self, job: HflJob, *, features: int, max_weight: float, run_dir: Path,
               capture: bool = False, audit_path: Path | None = None) -> Path:
        """`flwr run` the app with this job's run config; return the result file to wait for."""
        run_dir.mkdir(parents=True, exist_ok=True)
        app_dir = self.workdir / "app"
        if not app_dir.exists():
            shutil.copytree(APP_DIR, app_dir, ignore=shutil.ignore_patterns("__pycache__"))
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
            "capture-dir": str(self.capture_dir) if capture and self.capture_dir else "",
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


# jobs ---------------------------------------------------------------------------------------
def load_bank_tables(banks: Sequence[BankSpec]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every bank's (X, y), read through the node data layer (for the centralised twin)."""
    out = []
    for bank in banks:
        table = load_table(data_config_from(bank.node_config_args()), "label")
        assert table.y is not None
        out.append((table.X, table.y.astype(np.float64)))
    return out


def run_hfl(job: HflJob, workdir: Path | None = None, *, progress: Progress | None = None,
            audit_path: Path | None = None, timeout: float = 1800.0,
            centralized: bool = True) -> dict[str, Any]:
    """Train ``job`` on a fresh local federation; return the demo report's `horizontal` section."""
    job.check_privacy()
    tables = load_bank_tables(job.banks)
    features = {t[0].shape[1] for t in tables}
    if len(features) != 1:
        raise DataValidationError(f"banks' tables have different feature counts: {features}")
    max_weight = float(max(len(y) for _, y in tables))
    with _workdir(workdir) as root:
        audit = audit_path or root / "audit" / "coordinator.jsonl"
        started = time.monotonic()
        with Federation(root, job.banks, require_secagg=job.secagg) as fed:
            run_dir = fed.submit(job, features=features.pop(), max_weight=max_weight,
                                 run_dir=root / "runs" / job.job_id, audit_path=audit).parent
            result = fed.follow(run_dir, deadline=started + timeout, progress=progress)
        report = summarise(result, seconds=time.monotonic() - started)
        kept = workdir is not None or audit_path is not None
        report["audit_log"] = str(audit) if kept else None
        if centralized:
            central = train_centralized(tables, job.hyper_params(), rounds=job.rounds,
                                        holdout=job.holdout, seed=job.seed)
            report["auc_centralized"] = central.auc
            report["auc_centralized_pooled"] = central.auc_pooled
            if report["auc"] is not None:
                report["auc_gap"] = abs(report["auc"] - central.auc)
        return report


def summarise(result: dict[str, Any], *, seconds: float) -> dict[str, Any]:
    """The report section from the ServerApp's result: AUC, rounds, per-round costs, DP."""
    rounds = result["rounds"]
    completed = [r for r in rounds if r["status"] == "completed"]
    return {
        "auc": result["auc"],
        "rounds": len(rounds),
        "rounds_completed": len(completed),
        "banks": result["banks"],
        "secagg": result["secagg"],
        "dp": result["dp"],
        "epsilon": result["dp"]["epsilon"] if result["dp"] else None,
        "seconds": seconds,
        "seconds_training": result["seconds"],
        "seconds_per_round": _mean([r["seconds"] for r in rounds]),
        "bytes_per_round": _mean([r["bytes_sent"] + r["bytes_received"] for r in rounds]),
        "waiting_share": _share(rounds, "waiting_s"),
        "per_round": [{k: r[k] for k in ("round", "status", "banks_aggregated", "seconds",
                                          "auc", "epsilon")} for r in rounds],
        "final_weights": result["final_weights"],
    }


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def _share(rounds: Sequence[dict[str, Any]], key: str) -> float:
    total = sum(r["seconds"] for r in rounds)
    return sum(r[key] for r in rounds) / total if total else 0.0


@contextmanager
def _workdir(workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        yield Path(workdir).resolve()
        return
    with tempfile.TemporaryDirectory(prefix="fedcredit-hfl-") as tmp:
        yield Path(tmp)


def split_rows(csv_path: Path, out_dir: Path, banks: int, *, seed: int = 1) -> list[Path]:
    """Split a CSV by rows into ``banks`` files with the same header (disjoint customers)."""
    lines = Path(csv_path).read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    order = np.random.default_rng(seed).permutation(len(rows))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, part in enumerate(np.array_split(order, banks), start=1):
        path = out_dir / f"bank_{k}.csv"
        path.write_text("\n".join([header, *(rows[i] for i in part)]) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def give_credit_job(csv_path: Path, out_dir: Path, *, banks: int = 3, **settings: Any) -> HflJob:
    """A job over ``csv_path`` (id, y, x0..) split by rows among ``banks`` banks."""
    paths = split_rows(csv_path, out_dir, banks)
    specs = [BankSpec(name=f"bank-{k}", table=p, label_column="y", id_format="any")
             for k, p in enumerate(paths, start=1)]
    return HflJob(banks=specs, **settings)


# benchmark ----------------------------------------------------------------------------------
def run_hfl_benchmark(*, rounds: int = 3, data: Path | None = None, enterprises: int = 20000,
                      workdir: Path | None = None, progress: Progress | None = None,
                      timeout: float = 1800.0) -> dict[str, Any]:
    """Seconds and bytes per round over three banks, with SecAgg+ and without, on one federation.

    ``data``: a CSV (id, y, features) split by rows among the banks; default synthetic banks.
    Both runs use the same SuperLink and SuperNodes (started allowing plain updates, for the
    comparison). A round is its fit stages plus the evaluation stage.
    """
    from fedcredit.synth import synthesize

    with _workdir(workdir) as root:
        if data is not None:
            job = give_credit_job(data, root / "data", rounds=rounds, stage_timeout=120.0)
        else:
            made = synthesize(root / "data", enterprises=enterprises, seed=7, banks=3)
            job = HflJob(rounds=rounds, stage_timeout=120.0, banks=[
                BankSpec(name=f"bank-{k}", table=made.parties[f"bank_{k}"].path)
                for k in (1, 2, 3)])
        tables = load_bank_tables(job.banks)
        features, max_weight = tables[0][0].shape[1], float(max(len(y) for _, y in tables))
        runs: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        with Federation(root, job.banks, require_secagg=False) as fed:
            for name, secagg in (("secagg", True), ("plain", False)):
                variant = job.model_copy(update={"secagg": secagg, "job_id": f"bench-{name}"})
                run_dir = fed.submit(variant, features=features, max_weight=max_weight,
                                     run_dir=root / "runs" / name).parent
                runs[name] = round_costs(fed.follow(run_dir, deadline=deadline,
                                                    progress=progress))
        secure, plain = runs["secagg"], runs["plain"]
        return {
            "banks": len(job.banks),
            "rows": int(sum(len(y) for _, y in tables)),
            "rounds": rounds,
            "secagg": secure,
            "plain": plain,
            "secagg_over_plain": secure["seconds_per_round"] / plain["seconds_per_round"],
            "bytes_secagg_over_plain": secure["bytes_per_round"] / plain["bytes_per_round"],
        }


def round_costs(result: dict[str, Any]) -> dict[str, Any]:
    """Per-round means of a run: seconds, bytes, and where the time went."""
    rounds = result["rounds"]
    total = sum(r["seconds"] for r in rounds) or 1.0
    startup = sum(r["clientapp_startup_s"] for r in rounds)
    waiting = sum(r["waiting_s"] for r in rounds)
    return {
        "seconds_per_round": _mean([r["seconds"] for r in rounds]),
        "fit_seconds_per_round": _mean([r["fit_seconds"] for r in rounds]),
        "bytes_per_round": _mean([r["bytes_sent"] + r["bytes_received"] for r in rounds]),
        "messages_per_round": _mean([sum(s["sent"] for s in r["stages"]) for r in rounds]),
        "stages_per_round": _mean([len(r["stages"]) for r in rounds]),
        "client_compute_share": sum(r["client_compute_s"] for r in rounds) / total,
        "server_compute_share": sum(r["server_compute_s"] for r in rounds) / total,
        "clientapp_startup_share": startup / total,
        "polling_share": max(0.0, waiting - startup) / total,
        "auc": result["auc"],
    }

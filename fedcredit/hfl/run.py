"""`fedcredit train hfl` and the demo's horizontal section: one job on a fresh local federation."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import DataValidationError
from fedcredit.hfl.federation import Federation, Progress
from fedcredit.hfl.job import BankSpec, HflJob
from models.hfl.centralized import train_centralized
from node.datasource import load_table
from node.hfl_client import data_config_from


def load_bank_tables(banks: Sequence[BankSpec]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every bank's (X, y), read through the node data layer (for the centralised twin)."""
    out = []
    for bank in banks:
        table = load_table(data_config_from(bank.node_config_args()), "label").training_view()
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
    with workdir_or_temp(workdir) as root:
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
        "seconds_per_round": mean([r["seconds"] for r in rounds]),
        "bytes_per_round": mean([r["bytes_sent"] + r["bytes_received"] for r in rounds]),
        "waiting_share": _share(rounds, "waiting_s"),
        "per_round": [{k: r[k] for k in ("round", "status", "banks_aggregated", "seconds",
                                          "auc", "epsilon")} for r in rounds],
        "final_weights": result["final_weights"],
    }


def mean(values: Sequence[float]) -> float:
    """The mean, 0.0 for no values."""
    return float(np.mean(values)) if values else 0.0


def _share(rounds: Sequence[dict[str, Any]], key: str) -> float:
    total = sum(r["seconds"] for r in rounds)
    return sum(r[key] for r in rounds) / total if total else 0.0


@contextmanager
def workdir_or_temp(workdir: Path | None) -> Iterator[Path]:
    """``workdir`` (created if needed), or a temporary folder removed afterwards."""
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        yield Path(workdir).resolve()
        return
    with tempfile.TemporaryDirectory(prefix="fedcredit-hfl-") as tmp:
        yield Path(tmp)

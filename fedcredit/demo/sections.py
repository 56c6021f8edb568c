"""The demo report's sections: vertical LR, joint scoring, SecureBoost, horizontal learning."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fedcredit.demo.parties import FEATURE_PARTIES, LABEL_PARTY
from fedcredit.evaluate import (
    compare_sbt,
    compare_vlr,
    load_party_tables,
    plaintext_probabilities,
)
from fedcredit.follow import follow_job
from fedcredit.launcher import LocalNetwork
from fedcredit.synth import SynthResult, synthesize
from models.vlr import VlrConfig
from node.config import load_node_config
from node.policy import CreditPolicy
from node.scoring.bank import BankScorer
from proto.fedcredit.v1 import coordinator_pb2, coordinator_pb2_grpc

DEMO_SBT: dict[str, Any] = {"trees": 10, "depth": 3, "bins": 32, "learning_rate": 0.3}
DEMO_VLR: dict[str, Any] = {
    "learning_rate": 0.15, "batch_size": 1024, "max_epochs": 15, "patience": 3,
    "validation_fraction": 0.25, "seed": 7,
}




def train_vertical_lr(net: LocalNetwork, stub: coordinator_pb2_grpc.CoordinatorServiceStub,
                      synth: SynthResult, align_job: str, console: Console) -> dict[str, Any]:
    """Train the joint model over the network; compare with pooled and bank-only twins."""
    started = time.perf_counter()
    settings = {"label": LABEL_PARTY, "features": list(FEATURE_PARTIES), "align_job": align_job,
                "model_name": "demo-vlr", "vlr": DEMO_VLR}
    job = stub.Train(coordinator_pb2.TrainRequest(algorithm="vlr", config_json=json.dumps(settings),
                                                     job_id=f"{align_job}-vlr"), timeout=60)
    console.print("[bold]vertical logistic regression[/] (CKKS, coordinator as arbiter)")
    job = follow_job(stub, job.job_id, DEMO_VLR["max_epochs"], console=console, runs_on=False)
    if job.state != "done":
        raise RuntimeError(f"training job {job.job_id} {job.state}: {job.error}")
    seconds = time.perf_counter() - started
    metrics = json.loads(job.metrics_json)
    best = metrics["history"][-1]  # the final model's AUC/KS, computed once, complete it
    with console.status("fitting the pooled and bank-only twins outside the network"):
        tables = load_party_tables({p.name: p.data for p in net.parties}, LABEL_PARTY)
        twins = compare_vlr(net.workdir / "state", tables, LABEL_PARTY, FEATURE_PARTIES,
                            align_job, VlrConfig(**DEMO_VLR), synth.segments_path)
    section = {"auc": round(best["auc"], 4), "ks": round(best["ks"], 4),
               "auc_bank_only": round(twins["auc_bank_only"], 4),
               "auc_centralized": round(twins["auc_centralized"], 4),
               "epochs": len(metrics["history"]), "seconds": round(seconds, 2),
               "model_id": metrics.get("model_id", ""), "segments": twins.get("segments", {})}
    table = Table(title="joint model vs bank alone (validation rows)")
    for column in ("model", "AUC"):
        table.add_column(column)
    table.add_row("federated (4 parties, encrypted)", f"{section['auc']:.4f}")
    table.add_row("centralised twin (pooled data)", f"{section['auc_centralized']:.4f}")
    table.add_row("bank only", f"{section['auc_bank_only']:.4f}")
    console.print(table)
    return section


def score_sample(net: LocalNetwork, console: Console, singles: int = 200) -> dict[str, Any]:
    """The bank scores single enterprises and then its whole portfolio, jointly and encrypted."""
    tables = load_party_tables({p.name: p.data for p in net.parties}, LABEL_PARTY)
    scorer = BankScorer(load_node_config(net.config_path(LABEL_PARTY)), CreditPolicy(),
                        table=tables[LABEL_PARTY])
    try:
        others = [i for name in FEATURE_PARTIES for i in tables[name].ids[:50]]
        singles_ids = (list(tables[LABEL_PARTY].ids[:singles - len(others)]) + others)[:singles]
        latencies = []
        with console.status(f"scoring {len(singles_ids)} enterprises one by one"):
            for ident in singles_ids:
                started = time.perf_counter()
                scorer.score([ident], consent=f"demo-consent-{ident[-6:]}")
                latencies.append((time.perf_counter() - started) * 1e3)
        portfolio = list(tables[LABEL_PARTY].ids)
        with console.status(f"re-scoring the bank's portfolio of {len(portfolio):,}"):
            started = time.perf_counter()
            decisions = scorer.score(portfolio, consent="demo-portfolio-review",
                                     purpose="portfolio review")
            batch_seconds = time.perf_counter() - started
    finally:
        scorer.close()
    expected = plaintext_probabilities(net.workdir / "state", tables, scorer.job, portfolio)
    got = [d.probability for d in decisions]
    section = {"p50_ms": round(float(np.percentile(latencies, 50)), 2),
               "p99_ms": round(float(np.percentile(latencies, 99)), 2),
               "singles": len(latencies), "batch_ids": len(portfolio),
               "batch_seconds": round(batch_seconds, 3),
               "max_abs_error": float(max(abs(a - b) for a, b in zip(got, expected, strict=True))),
               "grades": _grade_counts(decisions)}
    console.print(f"[bold]scoring[/]: single enterprise p50 {section['p50_ms']} ms, p99 "
                  f"{section['p99_ms']} ms; {len(portfolio):,} in {batch_seconds:.2f}s; "
                  f"max |PD - plaintext| {section['max_abs_error']:.1e}")
    return section


def _grade_counts(decisions: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in decisions:
        counts[d.grade] = counts.get(d.grade, 0) + 1
    return dict(sorted(counts.items()))


def train_horizontal(root: Path, enterprises: int, seed: int, banks: int, rounds: int,
                     console: Console) -> dict[str, Any]:
    """Banks with the same schema and disjoint customers train one model on Flower."""
    from fedcredit.hfl.job import BankSpec, HflJob
    from fedcredit.hfl.run import run_hfl

    synth = synthesize(root / "data-banks", enterprises=enterprises, seed=seed, banks=banks)
    job = HflJob(banks=[BankSpec(name=f"bank-{k}", table=synth.parties[f"bank_{k}"].path,
                                 label_column="default") for k in range(1, banks + 1)],
                 rounds=rounds, secagg=banks >= 3)
    console.print(f"[bold]horizontal learning[/] across {banks} banks on Flower "
                  f"({'SecAgg+' if job.secagg else 'plain FedAvg'}, {rounds} rounds)")
    with console.status("Flower SuperLink and SuperNodes training"):
        result = run_hfl(job, root / "hfl")
    section = {"auc": result["auc"], "auc_centralized": result["auc_centralized"],
               "rounds": result["rounds"], "secagg": result["secagg"],
               "seconds": round(result["seconds"], 2),
               "seconds_per_round": round(result["seconds_per_round"], 2),
               "banks": banks}
    console.print(f"  federated AUC {section['auc']:.4f}, centralised "
                  f"{section['auc_centralized']:.4f}, {section['seconds']}s")
    return section


def train_secureboost(net: LocalNetwork, stub: coordinator_pb2_grpc.CoordinatorServiceStub,
                      align_job: str, console: Console) -> dict[str, Any]:
    """Boosted trees over the network (encrypted histograms) against XGBoost on pooled data."""
    started = time.perf_counter()
    settings = {"label": LABEL_PARTY, "features": list(FEATURE_PARTIES), "align_job": align_job,
                "model_name": "demo-sbt", "sbt": DEMO_SBT}
    job = stub.Train(coordinator_pb2.TrainRequest(config_json=json.dumps(settings),
                                                  job_id=f"{align_job}-sbt", algorithm="sbt"),
                     timeout=60)
    console.print("[bold]SecureBoost[/] (encrypted gradients, private split thresholds)")
    job = follow_job(stub, job.job_id, DEMO_SBT["trees"], unit="tree", console=console,
                     runs_on=False)
    if job.state != "done":
        raise RuntimeError(f"training job {job.job_id} {job.state}: {job.error}")
    seconds = time.perf_counter() - started
    metrics = json.loads(job.metrics_json)
    tables = load_party_tables({p.name: p.data for p in net.parties}, LABEL_PARTY)
    twin = compare_sbt(net.workdir / "state", tables, LABEL_PARTY, FEATURE_PARTIES, align_job,
                       DEMO_SBT)
    xgb = twin["auc_xgboost"]
    section = {"auc": round(metrics["auc"], 4),
               "ks": None if metrics.get("ks") is None else round(metrics["ks"], 4),
               "auc_xgboost": None if xgb is None else round(xgb, 4),
               "trees": DEMO_SBT["trees"], "seconds": round(seconds, 2),
               "model_id": metrics.get("model_id", "")}
    if "baseline_note" in twin:
        section["baseline_note"] = twin["baseline_note"]
    baseline = (f"{section['auc_xgboost']:.4f}" if xgb is not None
                else f"n/a ({escape(twin['baseline_note'])})")
    console.print(f"  federated AUC {section['auc']:.4f} (training rows), XGBoost on pooled "
                  f"data {baseline}, {section['seconds']}s")
    return section

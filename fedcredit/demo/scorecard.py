"""The demo's scorecard section: federated binning, a WOE scorecard on the selected
characteristics, its pooled twin, and the scorecard's model report (JSON + HTML) at the bank."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fedcredit.demo.parties import FEATURE_PARTIES, LABEL_PARTY
from fedcredit.evaluate import load_party_tables
from fedcredit.follow import follow_job
from fedcredit.launcher import LocalNetwork
from fedcredit.report.bank import ReportRequest, bank_report, write_report
from fedcredit.scorecard_twin import compare_scorecard, max_points_difference
from fedcredit.synth import SynthResult
from models.scorecard import ScorecardConfig
from node.config import load_node_config
from node.policy import CreditPolicy
from node.scoring.bank import BankScorer
from proto.fedcredit.v1 import coordinator_pb2, coordinator_pb2_grpc

DEMO_BINNING: dict[str, Any] = {"method": "optimal", "bins": 10}
DEMO_CARD: dict[str, Any] = {"learning_rate": 0.5, "batch_size": 4096, "max_epochs": 6,
                             "patience": 3, "validation_fraction": 0.25, "seed": 7}
REPORT_NAME = "model-report-scorecard"


def _train(stub: coordinator_pb2_grpc.CoordinatorServiceStub, algorithm: str, job_id: str,
           features: list[str], align_job: str, settings: dict[str, Any], console: Console,
           rounds: int, unit: str) -> coordinator_pb2.JobStatus:
    config = {"label": LABEL_PARTY, "features": features, "align_job": align_job,
              "model_name": f"demo-{algorithm}", algorithm: settings}
    stub.Train(coordinator_pb2.TrainRequest(algorithm=algorithm, config_json=json.dumps(config),
                                            job_id=job_id), timeout=60)
    job = follow_job(stub, job_id, rounds, console=console, runs_on=False, unit=unit)
    if job.state != "done":
        raise RuntimeError(f"{algorithm} job {job_id} {job.state}: {job.error}")
    return job


def train_scorecard(net: LocalNetwork, stub: coordinator_pb2_grpc.CoordinatorServiceStub,
                    synth: SynthResult, align_job: str, report_path: Path,
                    console: Console) -> dict[str, Any]:
    """Binning → scorecard → pooled twin → the bank's model report of the scorecard."""
    started = time.perf_counter()
    console.print("[bold]WOE scorecard[/] (federated binning, then label-private LR on WOE)")
    binning = _train(stub, "binning", f"{align_job}-bin", list(FEATURE_PARTIES), align_job,
                     DEMO_BINNING, console, 1, "pass")
    iv_table = json.loads(binning.metrics_json)["history"][-1]["iv_table"]
    chosen = [f"{r['party']}:{r['name']}" for r in iv_table if r["selected"]]
    features = [p for p in FEATURE_PARTIES if any(c.startswith(f"{p}:") for c in chosen)]
    settings = {**DEMO_CARD, "binning_job": binning.job_id, "characteristics": chosen}
    card = _train(stub, "scorecard", f"{align_job}-card", features, align_job, settings,
                  console, DEMO_CARD["max_epochs"], "epoch")
    metrics = json.loads(card.metrics_json)
    config = ScorecardConfig(**settings)
    state = net.workdir / "state"
    with console.status("fitting the pooled scorecard twin outside the network"):
        tables = load_party_tables({p.name: p.data for p in net.parties}, LABEL_PARTY)
        pooled = compare_scorecard(state, tables, LABEL_PARTY, align_job, config)
        worst = max_points_difference(state, card.job_id, pooled)
    model_id = metrics.get("model_id", "")
    scorer = BankScorer(load_node_config(net.config_path(LABEL_PARTY)), CreditPolicy(),
                        model_id=model_id, table=tables[LABEL_PARTY])
    try:
        with console.status("scoring the validation rows for the scorecard's model report"):
            report = bank_report(scorer, ReportRequest(consent="demo-scorecard-validation",
                                                       population=()))
    finally:
        scorer.close()
    json_path = report_path.parent / f"{REPORT_NAME}.json"
    html_path = report_path.parent / f"{REPORT_NAME}.html"
    write_report(report, json_path, html_path)
    points = report["scorecard"]["points"]
    example = max(points, default=None,  # the bank's characteristic with the widest range
                  key=lambda p: p["max_points"] - min(r["points"] for r in p["bins"]))
    section = {
        "auc": round(metrics["history"][-1]["auc"], 4), "auc_pooled": round(pooled.auc, 4),
        "auc_sklearn_pooled": round(pooled.sklearn_auc, 4),
        "max_points_difference": round(worst, 6), "characteristics": chosen,
        "iv_top10": [{"party": r["party"], "name": r["name"], "iv": round(r["iv"], 4),
                      "selected": r["selected"]}
                     for r in sorted(iv_table, key=lambda r: -r["iv"])[:10]],
        "points_example": None if example is None else {
            "characteristic": example["characteristic"],
            "bins": [{"bin": r["bin"], "points": round(r["points"], 1)}
                     for r in example["bins"]]},
        "base_points": round(report["scorecard"]["base_points"], 2),
        "model_id": model_id, "report_json": str(json_path), "report_html": str(html_path),
        "seconds": round(time.perf_counter() - started, 2)}
    _print(console, section)
    return section


def _print(console: Console, section: dict[str, Any]) -> None:
    table = Table(title="information value (top 10)")
    for column in ("party", "characteristic", "IV", "selected"):
        table.add_column(column)
    for r in section["iv_top10"]:
        table.add_row(r["party"], r["name"], f"{r['iv']:.4f}", "yes" if r["selected"] else "no")
    console.print(table)
    console.print(f"[bold]scorecard[/]: AUC federated {section['auc']:.4f}, pooled twin "
                  f"{section['auc_pooled']:.4f}, scikit-learn {section['auc_sklearn_pooled']:.4f}"
                  f"; max points difference {section['max_points_difference']:.2g}; "
                  f"{section['report_html']}")
    example = section["points_example"]
    if example is None:
        return
    points = Table(title=f"points of {example['characteristic']} (the bank's own)")
    points.add_column("bin")
    points.add_column("points")
    for r in example["bins"]:
        points.add_row(r["bin"], f"{r['points']:.1f}")
    console.print(points)

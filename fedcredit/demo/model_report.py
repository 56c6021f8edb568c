"""The demo's model report: the bank validates the joint LR model and writes JSON and HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from fedcredit.demo.parties import FEATURE_PARTIES, LABEL_PARTY
from fedcredit.evaluate import load_party_tables
from fedcredit.launcher import LocalNetwork
from fedcredit.report.bank import ReportRequest, bank_report, write_report
from fedcredit.synth import SynthResult
from node.config import load_node_config
from node.policy import CreditPolicy
from node.scoring.bank import BankScorer

APPLICANTS = 2000  # new-to-bank enterprises scored as the demo's scoring population
REPORT_NAME = "model-report-vlr"


def report_vertical_lr(net: LocalNetwork, synth: SynthResult, model_id: str,
                       report_path: Path, console: Console) -> dict[str, Any]:
    """`fedcredit report` for the LR model, at the bank: its validation rows scored jointly,
    segments from the synthetic data's segments file, and stability against new-to-bank
    applicants (enterprises only the feature nodes hold). Files go beside `report_path`."""
    tables = load_party_tables({p.name: p.data for p in net.parties}, LABEL_PARTY)
    customers = set(tables[LABEL_PARTY].ids)
    applicants = list(dict.fromkeys(i for name in FEATURE_PARTIES for i in tables[name].ids
                                    if i not in customers))[:APPLICANTS]
    scorer = BankScorer(load_node_config(net.config_path(LABEL_PARTY)), CreditPolicy(),
                        model_id=model_id, table=tables[LABEL_PARTY])
    try:
        with console.status("scoring the validation rows and applicants for the model report"):
            report = bank_report(scorer, ReportRequest(
                consent="demo-model-validation", population=tuple(applicants),
                population_name="new-to-bank applicants (held by feature nodes only)",
                segments=synth.segments_path))
    finally:
        scorer.close()
    json_path = report_path.parent / f"{REPORT_NAME}.json"
    html_path = report_path.parent / f"{REPORT_NAME}.html"
    write_report(report, json_path, html_path)
    stability = report["stability"] or {}
    section = {"gini": round(report["gini"], 4), "validation_rows": report["rows"],
               "psi": None if not stability else round(stability["psi"], 4),
               "report_json": str(json_path), "report_html": str(html_path)}
    console.print(f"[bold]model report[/]: AUC {report['auc']:.4f}, KS {report['ks']:.4f}, "
                  f"Gini {report['gini']:.4f} on {report['rows']:,} validation rows; PSI vs "
                  f"new-to-bank applicants {section['psi']}; {html_path}")
    return section

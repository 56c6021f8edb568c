"""`fedcredit report` at the bank: score the validation rows jointly, assemble, write JSON + HTML.

The scores come through the bank's ordinary joint-scoring path (`BankScorer.score`: one joint
score per scored enterprise, DESIGN §5), under a consent reference and a purpose the feature
nodes log and count against their budgets; nothing here reads a training-time logit. The report
files hold aggregates only (bins, segments, thinned curves), no row's score or id.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import DataValidationError
from common.files import atomic_write
from fedcredit.report.html import render_html
from fedcredit.report.rows import (
    applicants,
    decided_probabilities,
    job_rows,
    named_rows,
    read_segments,
)
from fedcredit.report.scorecard import scorecard_section
from models.report import validation_report
from node.job_record import load_job_record
from node.scoring.bank import BankScorer

SCORE_CHUNK = 50_000  # ids per scoring request
PURPOSE = "model validation"


@dataclass(frozen=True)
class ReportRequest:
    """What the bank asks a report for (each file optional; see `fedcredit report --help`)."""

    consent: str
    purpose: str = PURPOSE
    ids: Path | None = None  # labelled ids to validate on; default the job's validation rows
    population: tuple[str, ...] | None = None  # ids of a scoring population, scored now
    population_name: str = "the given ids"
    population_scores: Path | None = None  # a decisions CSV of `fedcredit score --out`
    segments: Path | None = None
    bins: int = 10


@dataclass(frozen=True)
class Scored:
    """Joint scores of the rows that got one (refused or unheld rows left out, counted)."""

    kept: np.ndarray  # bool per asked id
    pd: np.ndarray
    points: np.ndarray
    refused: int
    referred: int


def score_jointly(scorer: BankScorer, ids: Sequence[str], consent: str, purpose: str,
                  chunk: int = SCORE_CHUNK) -> Scored:
    """Each id's joint PD and policy points, `chunk` ids a request."""
    decisions = [d for start in range(0, len(ids), chunk)
                 for d in scorer.score(ids[start:start + chunk], consent, purpose)]
    outcome = np.asarray([d.outcome for d in decisions])
    kept = outcome == "decided"
    return Scored(kept=kept, pd=np.asarray([d.probability for d in decisions])[kept],
                  points=np.asarray([d.score for d in decisions], dtype=object)[kept]
                  .astype(np.float64),
                  refused=int(np.count_nonzero(outcome == "refused")),
                  referred=int(np.count_nonzero(outcome == "refer")))


def bank_report(scorer: BankScorer, request: ReportRequest) -> dict[str, Any]:
    """The report of the scorer's model on the bank's validation rows (see ReportRequest)."""
    table = scorer.table.training_view()
    if table.y is None:
        raise DataValidationError(f"{scorer.party} holds no labels: no validation report")
    if request.population is not None and request.population_scores is not None:
        raise DataValidationError("give at most one of --population and --population-scores")
    if request.ids is not None:
        rows = named_rows(request.ids, table)
    else:
        try:
            record = load_job_record(scorer.state_dir, scorer.job)
        except DataValidationError as err:
            raise type(err)(f"{err} (--ids)") from err
        rows = job_rows(scorer.state_dir, table, record)
    scored = score_jointly(scorer, rows.ids, request.consent, request.purpose)
    kept_ids = [i for i, k in zip(rows.ids, scored.kept, strict=True) if k]
    population, source, note = _population(scorer, request)
    about = {"model_id": scorer.model_id, "algorithm": scorer.algorithm, "job": scorer.job,
             "bank": scorer.party, "rows_note": rows.note,
             "rows_refused": scored.refused, "rows_referred": scored.referred,
             "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "population_source": source, "stability_note": note}
    segments = (read_segments(request.segments, kept_ids) if request.segments is not None
                else None)
    y = rows.y[scored.kept]
    if y.all() or not y.any():
        raise DataValidationError(f"the {y.size} scored rows ({rows.note}) hold one class "
                                  "only: nothing to validate against")
    report = validation_report(y, scored.pd, points=scored.points, segments=segments,
                               population=population, bins=request.bins, about=about)
    card = scorecard_section(scorer.state_dir, scorer.job, scorer.policy.scale)
    if card is not None:  # a scorecard: the bank's own points tables, on its policy's scale
        report["scorecard"] = card
    return report



def _population(scorer: BankScorer, request: ReportRequest,
                ) -> tuple[np.ndarray | None, str | None, str | None]:
    """(PDs of the scoring population, where they came from, a note when there are none)."""
    if request.population_scores is not None:
        return (decided_probabilities(request.population_scores),
                f"decisions in {request.population_scores.name}", None)
    if request.population is not None:
        ids, source = list(request.population), request.population_name
    else:
        ids, source = applicants(scorer.table), "the bank's unlabelled applicants"
    if not ids:
        return None, None, ("no scoring population: the bank's table has no unlabelled "
                            "applicants; give --population or --population-scores")
    scored = score_jointly(scorer, ids, request.consent, request.purpose)
    if not scored.kept.any():
        return None, source, f"no enterprise of {source} could be scored"
    return scored.pd, source, None


def write_report(report: dict[str, Any], json_path: Path, html_path: Path) -> None:
    """The report as JSON and as an HTML page (each written whole or not at all)."""
    atomic_write(json_path, (json.dumps(report, indent=2, allow_nan=False) + "\n").encode(),
                 mode=0o644)
    atomic_write(html_path, render_html(report).encode(), mode=0o644)

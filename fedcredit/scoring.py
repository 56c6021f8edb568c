"""Files of `fedcredit score`: ids in, decisions out."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.errors import DataValidationError
from node.scoring.outcome import Decision


def read_ids(path: Path) -> list[str]:
    """One id a line, or a CSV with an `id` column; blank lines skipped, duplicates refused."""
    try:
        lines = [line.strip() for line in path.read_text().splitlines()]
    except OSError as err:
        raise DataValidationError(f"{path}: cannot read ids: {err.strerror}") from err
    lines = [line for line in lines if line]
    if lines and "," in lines[0]:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if "id" not in (reader.fieldnames or []):
                raise DataValidationError(f"{path}: a CSV of ids needs an `id` column")
            lines = [row["id"].strip() for row in reader if row["id"].strip()]
    elif lines and lines[0].lower() == "id":
        lines = lines[1:]
    if not lines:
        raise DataValidationError(f"{path}: no ids")
    seen: set[str] = set()
    for number, ident in enumerate(lines, start=1):
        if ident in seen:
            raise DataValidationError(f"{path}: id on line {number} is a duplicate")
        seen.add(ident)
    return lines


def decision_row(d: Decision) -> dict[str, Any]:
    """A decision as JSON-safe fields (no NaN: a figure a decision does not have is None)."""
    return {"id": d.id, "outcome": d.outcome,
            "probability_of_default": None if math.isnan(d.probability) else d.probability,
            "score": d.score, "grade": d.grade, "credit_line": d.credit_line,
            "parties_covering": d.parties_covering, "reasons": list(d.reasons),
            "reason": d.reason}


def write_decisions(path: Path, decisions: Sequence[Decision]) -> None:
    """One row per id; a "refer" or "refused" outcome leaves score, grade and line empty."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "outcome", "probability_of_default", "score", "grade",
                         "credit_line", "parties_covering", "reasons", "reason"])
        for d in decisions:
            writer.writerow([d.id, d.outcome, _fmt(d.probability, ".6f"), _fmt(d.score, ".1f"),
                             d.grade or "", _fmt(d.credit_line, ".0f"), d.parties_covering,
                             ";".join(d.reasons), d.reason])


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None or math.isnan(value) else format(value, spec)

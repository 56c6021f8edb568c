"""Files of `fedcredit score`: ids in, decisions out."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from common.errors import DataValidationError
from node.scoring.bank import Decision


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


def write_decisions(path: Path, decisions: Sequence[Decision]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "probability_of_default", "score", "grade", "credit_line",
                         "parties_covering", "reasons"])
        for d in decisions:
            writer.writerow([d.id, f"{d.probability:.6f}", f"{d.score:.1f}", d.grade,
                             f"{d.credit_line:.0f}", d.parties_covering, ";".join(d.reasons)])

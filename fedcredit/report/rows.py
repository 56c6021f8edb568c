"""Which of the bank's rows a model report is about: the job's validation rows (or the ids the
bank names), the scoring population for stability, and the segments each row belongs to."""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import DataValidationError
from fedcredit.scoring import read_ids
from models.report import Segments
from node.alignment import AlignmentStale, AlignmentStore
from node.datasource import NodeTable
from node.job_record import JobRecord

SEGMENT_COLUMNS = ("tier", "credit_white")
"""The breakdowns a segments file gives by default (supplier tier; credit-white, when known)."""
UNKNOWN_SEGMENT = ("", "na", "nan", "null", "unknown")


@dataclass(frozen=True)
class LabelledRows:
    """Labelled enterprises to validate on: ids, labels, and what they are."""

    ids: list[str]
    y: np.ndarray
    note: str


def _vlr_validation(n_rows: int, settings: Mapping[str, Any]) -> tuple[np.ndarray, bool]:
    from models.vlr import VlrConfig
    from models.vlr.label import split_positions

    config = VlrConfig.model_validate(settings)
    return split_positions(n_rows, config)[1], config.validation_fraction > 0


def _scorecard_validation(n_rows: int, settings: Mapping[str, Any]) -> tuple[np.ndarray, bool]:
    from models.scorecard import ScorecardConfig
    from models.vlr.label import split_positions

    config = ScorecardConfig.model_validate(settings)
    return split_positions(n_rows, config)[1], config.validation_fraction > 0


HELD_OUT: dict[str, Callable[[int, Mapping[str, Any]], tuple[np.ndarray, bool]]] = {
    "vlr": _vlr_validation, "scorecard": _scorecard_validation,
}
"""Per algorithm that holds rows out of training: (positions in the job's training order, whether
they were held out). An algorithm not named validates on its training rows (in-sample)."""


def job_rows(state_dir: Path, table: NodeTable, record: JobRecord) -> LabelledRows:
    """The rows the job validated its model on, from the bank's own alignment and settings."""
    store = AlignmentStore(state_dir)
    try:
        store.verify(record.align_job, table.ids, record.label, table.source, record.label)
        order = store.load_order(record.align_job)
    except AlignmentStale as err:
        raise DataValidationError(
            f"the rows job {record.job} validated on cannot be found ({err}); name the "
            "labelled ids to validate on instead (--ids)") from err
    split = HELD_OUT.get(record.algorithm)
    positions, held_out = (split(order.size, record.settings) if split is not None
                           else (np.arange(order.size), False))
    rows = order[positions]
    assert table.y is not None
    note = (f"{rows.size} validation rows held out of training job {record.job}" if held_out
            else f"{rows.size} training rows of job {record.job} (in-sample: the algorithm "
                 "keeps no validation rows)")
    return LabelledRows(ids=[table.ids[i] for i in rows], y=table.y[rows].astype(np.int64),
                        note=note)


def named_rows(path: Path, table: NodeTable) -> LabelledRows:
    """The labelled rows of the bank's table that a file of ids names (e.g. an out-of-time
    sample); an id the table lacks, or holds without a label, is refused."""
    ids = read_ids(path)
    assert table.y is not None
    row_of = {ident: row for row, ident in enumerate(table.ids)}
    rows = np.fromiter((row_of.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
    missing = int(np.count_nonzero(rows < 0))
    if missing:
        raise DataValidationError(f"{path}: {missing} of {len(ids)} ids are not in the bank's "
                                  "table")
    unlabelled = int(np.count_nonzero(table.y[rows] < 0))
    if unlabelled:
        raise DataValidationError(f"{path}: {unlabelled} of {len(ids)} ids have no label")
    return LabelledRows(ids=ids, y=table.y[rows].astype(np.int64),
                        note=f"{len(ids)} labelled rows named in {path.name}")


def applicants(table: NodeTable) -> list[str]:
    """The bank's rows without a label (applicants): its scoring population by default."""
    if table.y is None:
        return []
    return [table.ids[i] for i in np.flatnonzero(table.y < 0)]


def decided_probabilities(path: Path) -> np.ndarray:
    """The PDs of the "decided" rows of a decisions CSV written by `fedcredit score --out`."""
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if "probability_of_default" not in (reader.fieldnames or []):
                raise DataValidationError(f"{path}: not a decisions file of `fedcredit score "
                                          "--out` (no probability_of_default column)")
            values = [row["probability_of_default"] for row in reader
                      if row.get("outcome", "decided") == "decided"]
    except OSError as err:
        raise DataValidationError(f"{path}: cannot read decisions: {err.strerror}") from err
    try:
        pd = np.asarray(values, dtype=np.float64)
    except ValueError as err:
        raise DataValidationError(f"{path}: a probability_of_default is not a number") from err
    if pd.size == 0 or not np.all((pd >= 0) & (pd <= 1)):
        raise DataValidationError(f"{path}: needs decided rows with PDs between 0 and 1")
    return pd


def read_segments(path: Path, ids: Sequence[str],
                  columns: Sequence[str] = SEGMENT_COLUMNS) -> Segments:
    """Row masks over `ids` per value of each named column of a CSV with an `id` column (the
    synthetic data's segments file has tier and credit_white). A row whose value is unknown
    (missing from the file, or empty) is in no group of that column; absent columns are
    skipped."""
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            if "id" not in fields:
                raise DataValidationError(f"{path}: a segments file needs an `id` column")
            wanted = [c for c in columns if c in fields]
            found = {row["id"]: row for row in reader}
    except OSError as err:
        raise DataValidationError(f"{path}: cannot read segments: {err.strerror}") from err
    out: dict[str, dict[str, np.ndarray]] = {}
    for column in wanted:
        values = np.asarray([found.get(i, {}).get(column, "").strip() for i in ids], dtype=str)
        known = ~np.isin(np.char.lower(values), UNKNOWN_SEGMENT)
        out[column] = {str(v): (values == v) & known for v in sorted(set(values[known]))}
    return out

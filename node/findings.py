"""Problems found in a node's table while checking it, and the one error that lists them."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from common.errors import DataValidationError
from node.config import DataConfig

MAX_LISTED = 50
"""Problems listed in one error message; the rest are counted."""
MAX_PER_KIND = 10
"""Rows listed for one kind of problem in one column before "... and N more"."""


@dataclass(frozen=True)
class Problem:
    """One problem in the table: where (column, 1-based data rows) and what is wrong."""

    message: str
    column: str | None = None
    rows: tuple[int, ...] = ()


class TableValidationError(DataValidationError):
    """The table breaks DESIGN §2; ``problems`` holds the listed ones, ``total`` counts all."""

    def __init__(self, source: str, problems: Sequence[Problem], total: int, message: str):
        super().__init__(message)
        self.source = source
        self.problems = tuple(problems)
        self.total = total


@dataclass
class Findings:
    """Problems collected while checking, with per-kind overflow counts."""

    problems: list[Problem] = field(default_factory=list)
    total: int = 0
    overflow: list[tuple[int, int, str]] = field(default_factory=list)  # (after, count, note)

    def add(self, problem: Problem, count: int = 1) -> None:
        self.problems.append(problem)
        self.total += count

    def add_rows(
        self, column: str, rows: npt.NDArray[np.int64], messages: Sequence[str], what: str
    ) -> None:
        """List the first MAX_PER_KIND rows (messages aligned with them), count the rest."""
        for row, message in zip(rows[:MAX_PER_KIND], messages, strict=False):
            self.add(Problem(message, column, (int(row),)))
        self.more(len(rows) - min(len(rows), MAX_PER_KIND), f"rows {what}")

    def more(self, count: int, what: str) -> None:
        """Count ``count`` further problems of the kind just listed, without listing them."""
        if count > 0:
            self.total += count
            self.overflow.append((len(self.problems), count, f"... and {count:,} more {what}"))


def show_value(value: str, limit: int = 60) -> str:
    """A cell value quoted for a message, shortened past ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def validation_error(source: str, cfg: DataConfig, findings: Findings) -> TableValidationError:
    """Format the findings (capped at MAX_LISTED lines) into one TableValidationError."""
    listed = findings.problems[:MAX_LISTED]
    lines_of = (
        _csv_lines(cfg.path, [r for p in listed for r in p.rows])
        if (cfg.source == "csv" and cfg.path is not None)
        else {}
    )
    notes = {after: (count, note) for after, count, note in findings.overflow}
    out = [f"{source}: {findings.total:,} problem(s); the node will not serve this table:"]
    unlisted = findings.total - len(listed)
    for index, problem in enumerate(listed):
        out.append(f"  - {_where(problem, lines_of)}{problem.message}")
        if index + 1 in notes:
            count, note = notes[index + 1]
            out.append(f"    {note}")
            unlisted -= count
    if unlisted > 0:
        out.append(f"  ... and {unlisted:,} more problems")
    return TableValidationError(source, listed, findings.total, "\n".join(out))


def _where(problem: Problem, lines_of: dict[int, int]) -> str:
    """``row 3 (line 4), column 'x': `` for a problem's location."""
    parts = [f"row {r} (line {lines_of[r]})" if r in lines_of else f"row {r}" for r in problem.rows]
    if problem.column is not None:
        parts.append(f"column {problem.column!r}")
    return ", ".join(parts) + ": " if parts else ""


def _csv_lines(path: Path, rows: Sequence[int]) -> dict[int, int]:
    """Map 1-based data rows to 1-based file lines (header = line 1), skipping blank lines.

    Quoted fields spanning lines are followed by counting double quotes; unreadable files map
    to nothing (messages then show rows only).
    """
    if not rows:
        return {}
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            buf = np.frombuffer(handle.read(), dtype=np.uint8)
    except OSError:
        return {}
    newlines = np.flatnonzero(buf == 10)
    quotes = np.flatnonzero(buf == 34)
    breaks = newlines[np.searchsorted(quotes, newlines) % 2 == 0]
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(buf)]))
    length = ends - starts
    carriage = (length == 1) & (buf[np.minimum(starts, len(buf) - 1)] == 13)
    records = starts[(length > 0) & ~carriage]
    line_of_record = np.searchsorted(newlines, records) + 1
    return {r: int(line_of_record[r]) for r in rows if r < len(records)}

"""The bank's portfolio in its state directory (SQLite, like its decisions): accounts, reviews,
alerts and line changes; the bank's own file, never sent anywhere."""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import DataValidationError
from common.sqlite import open_store

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    enterprise_id TEXT PRIMARY KEY,
    line REAL NOT NULL,
    drawn REAL NOT NULL,
    grade TEXT NOT NULL,
    pd REAL,
    score REAL,
    booked_at TEXT NOT NULL,
    expiry TEXT NOT NULL,
    booked_score REAL,
    frozen INTEGER NOT NULL DEFAULT 0,
    reviewed_at TEXT
);
CREATE TABLE IF NOT EXISTS reviews (
    review_id TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    summary_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    review_id TEXT NOT NULL,
    enterprise_id TEXT NOT NULL,
    at TEXT NOT NULL,
    alert_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_at ON alerts (at);
CREATE TABLE IF NOT EXISTS line_changes (
    review_id TEXT NOT NULL,
    enterprise_id TEXT NOT NULL,
    at TEXT NOT NULL,
    change_json TEXT NOT NULL
);
"""


class Account(BaseModel):
    """One booked line, as imported (`fedcredit portfolio import`) or booked by the demo."""

    model_config = ConfigDict(extra="forbid")

    enterprise_id: str = Field(min_length=1, max_length=128)
    line: float = Field(ge=0, allow_inf_nan=False)
    drawn: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    grade: str = Field(min_length=1)
    pd: float | None = Field(default=None, ge=0, le=1)
    score: float | None = Field(default=None, allow_inf_nan=False)
    booked_at: str
    expiry: str


def store_path(state_dir: Path) -> Path:
    """Where a bank keeps its portfolio."""
    return Path(state_dir) / "portfolio" / "portfolio.sqlite"


def read_accounts(path: Path) -> list[Account]:
    """A CSV of accounts (header: enterprise_id, line, drawn, grade, booked_at, expiry, and
    optionally pd, score); a bad cell is refused naming the file, the line and the column."""
    try:
        with Path(path).open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise DataValidationError(f"{path}: cannot read accounts: {err.strerror}") from err
    accounts, seen = [], set()
    for number, row in enumerate(rows, start=2):
        cleaned = {k: v for k, v in row.items() if k is not None and v not in ("", None)}
        try:
            account = Account.model_validate(cleaned)
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(x) for x in first["loc"]) or "?"
            raise DataValidationError(f"{path}: line {number}, column {field}: "
                                      f"{first['msg']}") from err
        if account.enterprise_id in seen:
            raise DataValidationError(f"{path}: line {number}: enterprise_id is a duplicate")
        seen.add(account.enterprise_id)
        accounts.append(account)
    if not accounts:
        raise DataValidationError(f"{path}: no accounts")
    return accounts


COLUMNS = ("enterprise_id", "line", "drawn", "grade", "pd", "score", "booked_at", "expiry",
           "booked_score", "frozen", "reviewed_at")


class PortfolioStore:
    """Accounts keyed by enterprise id; each review's summary, alerts and line changes."""

    def __init__(self, path: Path) -> None:
        self._db = open_store(path)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def book(self, accounts: Sequence[Account]) -> int:
        """Add or replace accounts (the score at booking kept for stability monitoring)."""
        rows = [(a.enterprise_id, a.line, a.drawn, a.grade, a.pd, a.score, a.booked_at,
                 a.expiry, a.score, 0, None) for a in accounts]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(f"INSERT OR REPLACE INTO accounts VALUES "
                                 f"({','.join('?' * len(COLUMNS))})", rows)
            self._db.execute("COMMIT")
        return len(rows)

    def enterprise_ids(self) -> list[str]:
        """The enterprise of every account, ordered by id."""
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT enterprise_id FROM accounts ORDER BY enterprise_id")]

    def columns(self) -> dict[str, list[Any]]:
        """Every account as columns (name -> values, ordered by enterprise id); empty lists
        when there is none. Cheaper than `accounts` for a whole-book review."""
        with self._lock:
            rows = self._db.execute(f"SELECT {','.join(COLUMNS)} FROM accounts "
                                    "ORDER BY enterprise_id").fetchall()
        values = list(zip(*rows, strict=True)) if rows else [() for _ in COLUMNS]
        return {name: list(v) for name, v in zip(COLUMNS, values, strict=True)}

    def accounts(self) -> list[dict[str, Any]]:
        """Every account, ordered by enterprise id."""
        with self._lock:
            rows = self._db.execute(f"SELECT {','.join(COLUMNS)} FROM accounts "
                                    "ORDER BY enterprise_id").fetchall()
        return [dict(zip(COLUMNS, r, strict=True)) for r in rows]

    def record_review(self, review_id: str, at: str, summary: dict[str, Any],
                      updates: Sequence[tuple[Any, ...]], alerts: Sequence[dict[str, Any]],
                      changes: Sequence[dict[str, Any]]) -> None:
        """One review in one transaction: account updates (line, grade, pd, score, frozen,
        expiry, reviewed_at, enterprise_id), its alerts, line changes and summary."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("UPDATE accounts SET line=?, grade=?, pd=?, score=?, frozen=?, "
                                 "expiry=?, reviewed_at=? WHERE enterprise_id=?", updates)
            self._db.executemany("INSERT INTO alerts VALUES (?,?,?,?)",
                                 [(review_id, a["enterprise_id"], at, json.dumps(a))
                                  for a in alerts])
            self._db.executemany("INSERT INTO line_changes VALUES (?,?,?,?)",
                                 [(review_id, c["enterprise_id"], at, json.dumps(c))
                                  for c in changes])
            self._db.execute("INSERT INTO reviews VALUES (?,?,?)",
                             (review_id, at, json.dumps(summary)))
            self._db.execute("COMMIT")

    def alerts(self, since: str = "", review_id: str = "") -> list[dict[str, Any]]:
        """Alerts raised at or after `since` (ISO time), or by one review."""
        query = "SELECT alert_json FROM alerts WHERE at >= ?" + \
            (" AND review_id = ?" if review_id else "") + " ORDER BY at, enterprise_id"
        args: tuple[str, ...] = (since, review_id) if review_id else (since,)
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [json.loads(r[0]) for r in rows]

    def line_changes(self, since: str = "", review_id: str = "") -> list[dict[str, Any]]:
        query = "SELECT change_json FROM line_changes WHERE at >= ?" + \
            (" AND review_id = ?" if review_id else "") + " ORDER BY at, enterprise_id"
        args: tuple[str, ...] = (since, review_id) if review_id else (since,)
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [json.loads(r[0]) for r in rows]

    def reviews(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT summary_json FROM reviews ORDER BY at").fetchall()
        return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()

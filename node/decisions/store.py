"""The bank's record of its decisions (SQLite in its state directory), to explain each later."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    record_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_enterprise ON decisions (enterprise_id, created_at);
"""


class DecisionStore:
    """Each decision as one JSON record (inputs used, model, policy version, coverage, consent,
    times), keyed by its id; the bank's own file, never sent anywhere."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def put(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT INTO decisions VALUES (?,?,?,?)",
                             (record["decision_id"], record["enterprise_id"],
                              record["created_at"], json.dumps(record, sort_keys=True)))

    def get(self, decision_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT record_json FROM decisions WHERE decision_id=?",
                                   (decision_id,)).fetchone()
        if row is None:
            return None
        found: dict[str, Any] = json.loads(row[0])
        return found

    def count(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT count(*) FROM decisions").fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            self._db.close()

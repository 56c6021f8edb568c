"""The bank's record of its decisions (SQLite in its state directory), to explain each later."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from common.sqlite import open_store

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    record_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_enterprise ON decisions (enterprise_id, created_at);
CREATE TABLE IF NOT EXISTS rule_hits (
    strategy_version TEXT NOT NULL,
    rule TEXT NOT NULL,
    hits INTEGER NOT NULL,
    PRIMARY KEY (strategy_version, rule)
);
"""


class DecisionStore:
    """Each decision as one JSON record (inputs used, model, policy version, coverage, consent,
    times), keyed by its id; the bank's own file, never sent anywhere."""

    def __init__(self, path: Path) -> None:
        self._db = open_store(path)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def put(self, record: dict[str, Any]) -> None:
        """Store a decision and count the strategy rules it hit, in one transaction."""
        admission = record.get("admission") or {}
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("INSERT INTO decisions VALUES (?,?,?,?)",
                             (record["decision_id"], record["enterprise_id"],
                              record["created_at"], json.dumps(record, sort_keys=True)))
            self._db.executemany(
                "INSERT INTO rule_hits VALUES (?,?,1) ON CONFLICT (strategy_version, rule) "
                "DO UPDATE SET hits = hits + 1",
                [(admission["strategy_version"], rule) for rule in admission.get("rules_hit", [])])
            self._db.execute("COMMIT")

    def rule_hits(self) -> dict[str, dict[str, int]]:
        """Hits of each rule, by strategy version."""
        with self._lock:
            rows = self._db.execute("SELECT strategy_version, rule, hits FROM rule_hits "
                                    "ORDER BY strategy_version, rule").fetchall()
        out: dict[str, dict[str, int]] = {}
        for version, rule, hits in rows:
            out.setdefault(version, {})[rule] = int(hits)
        return out

    def records(self, since: str = "", limit: int = 1_000_000) -> list[dict[str, Any]]:
        """Stored decisions created at or after `since` (ISO time), oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT record_json FROM decisions WHERE created_at >= ? "
                                    "ORDER BY created_at LIMIT ?", (since, limit)).fetchall()
        return [json.loads(r[0]) for r in rows]

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

"""Per-enterprise query budget at a feature node: queries per (bank, enterprise, day), SQLite."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from pathlib import Path

DEFAULT_DAILY_BUDGET = 20


class BudgetBook:
    """Queries per (requesting bank, enterprise, day), kept in the node's state directory."""

    def __init__(self, path: Path, daily_budget: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.daily_budget = daily_budget
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS queries (bank TEXT, hid BLOB, day TEXT, "
                         "n INTEGER, PRIMARY KEY (bank, hid, day))")
        self._lock = threading.Lock()

    def charge(self, bank: str, hashed: list[bytes]) -> set[bytes]:
        """Count one query for each enterprise still within its budget; return the others
        (refused, not charged). Every asked id is counted, held here or not."""
        day = dt.datetime.now(dt.UTC).date().isoformat()
        with self._lock:
            used: dict[bytes, int] = {}
            for start in range(0, len(hashed), 900):
                chunk = hashed[start:start + 900]
                marks = ",".join("?" * len(chunk))
                used.update(self._db.execute(
                    f"SELECT hid, n FROM queries WHERE bank=? AND day=? AND hid IN ({marks})",  # noqa: S608
                    (bank, day, *chunk)).fetchall())
            over = {h for h in set(hashed) if used.get(h, 0) >= self.daily_budget}
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO queries VALUES (?,?,?,1) ON CONFLICT(bank, hid, day) "
                "DO UPDATE SET n = n + 1", [(bank, h, day) for h in set(hashed) - over])
            self._db.execute("COMMIT")
            return over

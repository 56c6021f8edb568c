"""A feature node's scoring counters in SQLite: answers per (bank, enterprise, day), the models
each enterprise was scored with in the period, and requests per (bank, day); they survive
restarts.

Enterprises are pseudonyms (`crypto.pseudonym`), so the counters hold no id. The caps come from
the node's own `[scoring]` table (`node.config.ScoringCaps`); this module counts and says what is
over, the handler (`node.scoring.feature`) refuses and audits.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import ProtocolError
from crypto.pseudonym import PSEUDONYM_BYTES, split
from node.config import ScoringCaps

DEFAULT_DAILY_BUDGET = ScoringCaps().daily_budget
_SERIES = "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < :count) "
CACHE_KIB = 65536  # SQLite's page cache for the counters


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@dataclass(frozen=True)
class Charge:
    """What one request's ids met: those over the daily budget and those over the model
    versions of the period (neither is charged); every other id was counted."""

    over_budget: frozenset[bytes]
    over_versions: frozenset[bytes]

    @property
    def refused(self) -> frozenset[bytes]:
        return self.over_budget | self.over_versions


class BudgetBook:
    """Answers per (requesting bank, enterprise, day), the last day each (bank, enterprise) was
    scored with each model, and requests per (bank, day), kept in the node's state directory.
    A charge reads only the ids over a cap and writes each table in one statement."""

    def __init__(self, path: Path, caps: ScoringCaps | int = DEFAULT_DAILY_BUDGET, *,
                 today: Callable[[], dt.date] = _today) -> None:
        """`caps` may be a daily budget alone (other caps at their defaults); `today` gives
        the UTC day (a test moves it)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.caps = caps if isinstance(caps, ScoringCaps) else ScoringCaps(daily_budget=caps)
        self.today = today
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        # Clustered on their keys (WITHOUT ROWID) and written in key order, one statement each
        # for a whole request: a million ids are counted in ~2 s, not the ~15 s of random
        # inserts into a rowid table and its index. `answers.jobs` is no longer written (the
        # versions table replaced it; it stays for stores made before).
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (bank TEXT, hid BLOB, day TEXT, "
                         "n INTEGER, jobs TEXT NOT NULL DEFAULT '', PRIMARY KEY (bank, hid, day)) "
                         "WITHOUT ROWID")
        if self._db.execute("SELECT name FROM sqlite_master WHERE name='queries'").fetchone():
            self._db.execute("BEGIN")  # kept by the version before model-version caps
            self._db.execute("INSERT OR IGNORE INTO answers (bank, hid, day, n) "
                             "SELECT bank, hid, day, n FROM queries")
            self._db.execute("DROP TABLE queries")
            self._db.execute("COMMIT")
        if not self._db.execute("SELECT name FROM sqlite_master WHERE name='versions'"
                                ).fetchone():
            self._db.execute("BEGIN")
            self._db.execute("CREATE TABLE versions (bank TEXT, hid BLOB, job TEXT, "
                             "last_day TEXT NOT NULL, PRIMARY KEY (bank, hid, job)) WITHOUT ROWID")
            self._db.executemany(  # the jobs each answer was given under, as kept before
                "INSERT INTO versions VALUES (?,?,?,?) ON CONFLICT(bank, hid, job) DO UPDATE "
                "SET last_day = max(last_day, excluded.last_day)",
                ((bank, hid, job, day) for bank, hid, day, jobs in self._db.execute(
                    "SELECT bank, hid, day, jobs FROM answers WHERE jobs != ''").fetchall()
                 for job in jobs.split(",")))
            self._db.execute("COMMIT")
        self._db.execute("CREATE TABLE IF NOT EXISTS requests (bank TEXT, day TEXT, "
                         "n INTEGER, PRIMARY KEY (bank, day))")
        self._lock = threading.Lock()
        self._purged = ""

    @property
    def daily_budget(self) -> int:
        return self.caps.daily_budget

    def count_request(self, bank: str) -> int | None:
        """Count one request of `bank` today; None if that is within `max_requests_per_day`,
        else the requests already answered today (this one refused, not counted)."""
        day = self.today().isoformat()
        with self._lock:
            row = self._db.execute("SELECT n FROM requests WHERE bank=? AND day=?",
                                   (bank, day)).fetchone()
            used = int(row[0]) if row else 0
            if used >= self.caps.max_requests_per_day:
                return used
            self._db.execute("INSERT INTO requests VALUES (?,?,1) ON CONFLICT(bank, day) "
                             "DO UPDATE SET n = n + 1", (bank, day))
            return None

    def charge(self, bank: str, hashed: Sequence[bytes], job: str = "") -> Charge:
        """Count one answer for each enterprise within its caps, under model `job`; return the
        others (refused, not charged). Every asked id is counted, held here or not, so every
        feature node refuses the same ids."""
        today = self.today()
        day = today.isoformat()
        since = (today - dt.timedelta(days=self.caps.model_period_days - 1)).isoformat()
        if not hashed:
            return Charge(over_budget=frozenset(), over_versions=frozenset())
        asked = _sorted_distinct(hashed)  # in key order: neighbouring pages
        series = {"asked": asked, "count": len(asked) // PSEUDONYM_BYTES, "bank": bank,
                  "day": day, "since": since, "job": job, "budget": self.caps.daily_budget,
                  "versions": self.caps.max_model_versions}
        with self._lock:
            self._purge(since)
            over_budget = frozenset(bytes(row[0]) for row in self._db.execute(_SERIES + (
                "SELECT hid FROM answers WHERE bank = :bank AND day = :day AND n >= :budget "
                "AND hid IN (SELECT substr(:asked, i * 16 + 1, 16) FROM s)"), series))
            over_versions = frozenset(bytes(row[0]) for row in self._db.execute(_SERIES + (
                "SELECT hid FROM versions WHERE bank = :bank AND last_day >= :since AND hid IN "
                "(SELECT substr(:asked, i * 16 + 1, 16) FROM s) AND job != '' GROUP BY hid "
                "HAVING sum(job = :job) = 0 AND count(*) >= :versions"), series)) - over_budget
            refused = over_budget | over_versions
            charged = asked if not refused else b"".join(
                h for h in split(asked) if h not in refused)
            self._db.execute("BEGIN")
            if charged:
                series.update(charged=charged, count=len(charged) // PSEUDONYM_BYTES)
                self._db.execute(_SERIES + (
                    "INSERT INTO answers (bank, hid, day, n) SELECT :bank, "
                    "substr(:charged, i * 16 + 1, 16), :day, 1 FROM s WHERE true "
                    "ON CONFLICT(bank, hid, day) DO UPDATE SET n = n + 1"), series)
                if job:  # job ids have no comma; "" (no model named) counts no version
                    self._db.execute(_SERIES + (
                        "INSERT INTO versions SELECT :bank, substr(:charged, i * 16 + 1, 16), "
                        ":job, :day FROM s WHERE true ON CONFLICT(bank, hid, job) DO UPDATE "
                        "SET last_day = :day WHERE last_day < :day"), series)
            self._db.execute("COMMIT")
            return Charge(over_budget=over_budget, over_versions=over_versions)

    def _purge(self, since: str) -> None:
        """Once a day: drop counts no cap looks at any more (days before the period)."""
        day = self.today().isoformat()
        if self._purged == day:
            return
        self._db.execute("DELETE FROM answers WHERE day < ?", (day,))  # budgets are daily
        self._db.execute("DELETE FROM versions WHERE last_day < ?", (since,))
        self._db.execute("DELETE FROM requests WHERE day < ?", (day,))
        self._purged = day


def _sorted_distinct(hashed: Sequence[bytes]) -> bytes:
    """Each pseudonym once, in byte order (SQLite's order of BLOB keys), as one blob: sorted by
    numpy, handed to SQLite whole (a recursive series splits it), no Python loop per id."""
    blob = b"".join(hashed)
    if len(blob) != PSEUDONYM_BYTES * len(hashed):
        raise ProtocolError(f"the query budget counts {PSEUDONYM_BYTES}-byte pseudonyms only")
    keys = np.frombuffer(blob, dtype=">u8").reshape(len(hashed), PSEUDONYM_BYTES // 8)
    order = np.lexsort(keys.T[::-1])
    keys = keys[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (keys[1:] != keys[:-1]).any(axis=1)
    return np.frombuffer(blob, dtype=f"V{PSEUDONYM_BYTES}")[order[first]].tobytes()

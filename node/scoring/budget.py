"""A feature node's scoring counters in SQLite: the pseudonyms each request was charged for (the
day's answers per bank and enterprise are counted from them, in memory), the models each
enterprise was scored with in the period, and requests per (bank, day); they survive restarts.

Enterprises are pseudonyms (`crypto.pseudonym`), so the counters hold no id. The caps come from
the node's own `[scoring]` table (`node.config.ScoringCaps`); this module counts and says what is
over, the handler (`node.scoring.feature`) refuses and audits.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import ProtocolError
from common.sqlite import open_store
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
    A charge is written as one row (its pseudonyms as one blob, committed before the answer
    leaves) and counted in memory; model versions are read and written only for ids not yet
    charged today under the request's model (a million repeated ids: ~1.3 s, not ~13 s)."""

    def __init__(self, path: Path, caps: ScoringCaps | int = DEFAULT_DAILY_BUDGET, *,
                 today: Callable[[], dt.date] = _today) -> None:
        """`caps` may be a daily budget alone (other caps at their defaults); `today` gives
        the UTC day (a test moves it)."""
        self.caps = caps if isinstance(caps, ScoringCaps) else ScoringCaps(daily_budget=caps)
        self.today = today
        self._db = open_store(path, CACHE_KIB)
        # A charge is one row: the day's pseudonyms charged by one request, as one blob (a
        # million in one insert); the day's counts are kept in memory, rebuilt from these rows
        # after a restart. Model versions: the last day each (bank, enterprise, model) was
        # scored, clustered on its key (WITHOUT ROWID) and written only for ids not yet charged
        # today under that model.
        self._db.execute("CREATE TABLE IF NOT EXISTS charges (bank TEXT NOT NULL, day TEXT NOT "
                         "NULL, job TEXT NOT NULL, hids BLOB NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS charges_day ON charges (day, bank)")
        self._db.execute("CREATE TABLE IF NOT EXISTS versions (bank TEXT, hid BLOB, job TEXT, "
                         "last_day TEXT NOT NULL, PRIMARY KEY (bank, hid, job)) WITHOUT ROWID")
        _upgrade(self._db, self.today().isoformat())
        self._db.execute("CREATE TABLE IF NOT EXISTS requests (bank TEXT, day TEXT, "
                         "n INTEGER, PRIMARY KEY (bank, day))")
        self._lock = threading.Lock()
        self._purged = ""
        self._day = ""  # the day of the counts below
        self._counts: dict[str, Counter[bytes]] = {}  # answers today, by bank
        self._done: dict[tuple[str, str], set[bytes]] = {}  # charged today, by (bank, model)

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
        items = split(asked)
        with self._lock:
            self._purge(since)
            self._load(day)
            counts = self._counts.setdefault(bank, Counter())
            budget = self.caps.daily_budget
            over_budget = frozenset(h for h in items if counts[h] >= budget)
            done = self._done.get((bank, job), set()) if job else set()
            fresh = [h for h in items if h not in done and h not in over_budget]
            over_versions: frozenset[bytes] = frozenset()
            if fresh:  # ids charged today under this model have it among their versions
                over_versions = frozenset(bytes(row[0]) for row in self._db.execute(_SERIES + (
                    "SELECT hid FROM versions WHERE bank = :bank AND last_day >= :since AND "
                    "hid IN (SELECT substr(:asked, i * 16 + 1, 16) FROM s) AND job != '' "
                    "GROUP BY hid HAVING sum(job = :job) = 0 AND count(*) >= :versions"), {
                        "asked": b"".join(fresh), "count": len(fresh), "bank": bank,
                        "since": since, "job": job, "versions": self.caps.max_model_versions}))
            refused = over_budget | over_versions
            charged = items if not refused else [h for h in items if h not in refused]
            new_versions = [h for h in fresh if h not in over_versions] if job else []
            self._db.execute("BEGIN")
            if charged:
                self._db.execute("INSERT INTO charges VALUES (?,?,?,?)",
                                 (bank, day, job, b"".join(charged)))
            if new_versions:  # job ids have no comma; "" (no model named) counts no version
                self._db.execute(_SERIES + (
                    "INSERT INTO versions SELECT :bank, substr(:fresh, i * 16 + 1, 16), :job, "
                    ":day FROM s WHERE true ON CONFLICT(bank, hid, job) DO UPDATE "
                    "SET last_day = :day WHERE last_day < :day"), {
                        "fresh": b"".join(new_versions), "count": len(new_versions),
                        "bank": bank, "job": job, "day": day})
            self._db.execute("COMMIT")
            counts.update(charged)
            if job:
                self._done.setdefault((bank, job), set()).update(charged)
            return Charge(over_budget=over_budget, over_versions=over_versions)

    def _load(self, day: str) -> None:
        """The day's counts in memory, from its charges (after a restart, or a new day)."""
        if self._day == day:
            return
        self._counts, self._done = {}, {}
        for bank, job, hids in self._db.execute("SELECT bank, job, hids FROM charges "
                                                "WHERE day = ?", (day,)):
            charged = split(bytes(hids))
            self._counts.setdefault(bank, Counter()).update(charged)
            if job:
                self._done.setdefault((bank, job), set()).update(charged)
        self._day = day

    def _purge(self, since: str) -> None:
        """Once a day: drop counts no cap looks at any more (days before the period)."""
        day = self.today().isoformat()
        if self._purged == day:
            return
        self._db.execute("DELETE FROM charges WHERE day < ?", (day,))  # budgets are daily
        self._db.execute("DELETE FROM versions WHERE last_day < ?", (since,))
        self._db.execute("DELETE FROM requests WHERE day < ?", (day,))
        self._purged = day


def _upgrade(db: sqlite3.Connection, day: str) -> None:
    """Bring a store made by an earlier version to these tables: `queries` (before model
    versions) and `answers` (a row per bank, enterprise and day, with its models)."""
    if db.execute("SELECT name FROM sqlite_master WHERE name='queries'").fetchone():
        db.execute("BEGIN")
        db.execute("CREATE TABLE IF NOT EXISTS answers (bank TEXT, hid BLOB, day TEXT, "
                   "n INTEGER, jobs TEXT NOT NULL DEFAULT '', PRIMARY KEY (bank, hid, day))")
        db.execute("INSERT OR IGNORE INTO answers (bank, hid, day, n) "
                   "SELECT bank, hid, day, n FROM queries")
        db.execute("DROP TABLE queries")
        db.execute("COMMIT")
    if not db.execute("SELECT name FROM sqlite_master WHERE name='answers'").fetchone():
        return
    db.execute("BEGIN")
    db.executemany(  # the models each answer was given under
        "INSERT INTO versions VALUES (?,?,?,?) ON CONFLICT(bank, hid, job) DO UPDATE "
        "SET last_day = max(last_day, excluded.last_day)",
        ((bank, bytes(hid), job, seen) for bank, hid, seen, jobs in db.execute(
            "SELECT bank, hid, day, jobs FROM answers WHERE jobs != ''").fetchall()
         for job in jobs.split(",")))
    layers: dict[tuple[str, int], list[bytes]] = {}  # today's counts as charges
    for bank, hid, n in db.execute("SELECT bank, hid, n FROM answers WHERE day = ?", (day,)):
        for k in range(int(n)):
            layers.setdefault((bank, k), []).append(bytes(hid))
    db.executemany("INSERT INTO charges VALUES (?,?,'',?)",
                   [(bank, day, b"".join(hids)) for (bank, _), hids in sorted(layers.items())])
    db.execute("DROP TABLE answers")
    db.execute("COMMIT")


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

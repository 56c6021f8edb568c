"""A feature node's scoring counters in SQLite: answers per (bank, enterprise, day), the models
each enterprise was scored with, and requests per (bank, day); they survive restarts.

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

from crypto.pseudonym import PSEUDONYM_BYTES
from node.config import ScoringCaps

DEFAULT_DAILY_BUDGET = ScoringCaps().daily_budget
_CHUNK = 900  # parameters in one IN (...) list, under SQLite's limit of 999 by default
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
    """Answers per (requesting bank, enterprise, day) with the models used that day, and
    requests per (bank, day), kept in the node's state directory."""

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
        # Clustered on its key (WITHOUT ROWID) and written in key order: a batch of a million
        # new ids takes ~3 s, not the ~15 s of random inserts into a rowid table and its index.
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (bank TEXT, hid BLOB, day TEXT, "
                         "n INTEGER, jobs TEXT NOT NULL DEFAULT '', PRIMARY KEY (bank, hid, day)) "
                         "WITHOUT ROWID")
        if self._db.execute("SELECT name FROM sqlite_master WHERE name='queries'").fetchone():
            self._db.execute("BEGIN")  # kept by the version before model-version caps
            self._db.execute("INSERT OR IGNORE INTO answers (bank, hid, day, n) "
                             "SELECT bank, hid, day, n FROM queries")
            self._db.execute("DROP TABLE queries")
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
        with self._lock:
            self._purge(since)
            used: dict[bytes, int] = {}
            today_jobs: dict[bytes, str] = {}
            period_jobs: dict[bytes, set[str]] = {}
            distinct = _sorted_distinct(hashed)  # in key order: neighbouring pages
            for start in range(0, len(distinct), _CHUNK):
                chunk = distinct[start:start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for hid, seen, n, jobs in self._db.execute(
                        f"SELECT hid, day, n, jobs FROM answers WHERE bank=? AND day>=? "  # noqa: S608
                        f"AND hid IN ({marks})", (bank, since, *chunk)):
                    names = set(jobs.split(",")) - {""}
                    period_jobs.setdefault(hid, set()).update(names)
                    if seen == day:
                        used[hid], today_jobs[hid] = n, jobs
            budget, versions = self.caps.daily_budget, self.caps.max_model_versions
            over_budget = frozenset(h for h, n in used.items() if n >= budget)
            over_versions = frozenset(
                h for h, names in period_jobs.items()
                if job not in names and len(names) >= versions) - over_budget
            refused = over_budget | over_versions
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO answers VALUES (?,?,?,1,?) ON CONFLICT(bank, hid, day) "
                "DO UPDATE SET n = n + 1, jobs = excluded.jobs",
                [(bank, h, day, _with(today_jobs[h], job) if h in today_jobs else job)
                 for h in distinct if h not in refused])
            self._db.execute("COMMIT")
            return Charge(over_budget=over_budget, over_versions=over_versions)

    def _purge(self, since: str) -> None:
        """Once a day: drop counts no cap looks at any more (days before the period)."""
        day = self.today().isoformat()
        if self._purged == day:
            return
        self._db.execute("DELETE FROM answers WHERE day < ?", (since,))
        self._db.execute("DELETE FROM requests WHERE day < ?", (day,))
        self._purged = day


def _sorted_distinct(hashed: Sequence[bytes]) -> list[bytes]:
    """Each pseudonym once, in byte order (SQLite's order of BLOB keys), sorted by numpy."""
    blob = b"".join(hashed)
    if len(blob) != PSEUDONYM_BYTES * len(hashed):  # not all pseudonyms: the general way
        return sorted(set(hashed))
    keys = np.frombuffer(blob, dtype=">u8").reshape(len(hashed), PSEUDONYM_BYTES // 8)
    order = np.lexsort(keys.T[::-1])
    keys = keys[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (keys[1:] != keys[:-1]).any(axis=1)
    return [hashed[i] for i in order[first].tolist()]


def _with(jobs: str, job: str) -> str:
    """The comma-separated jobs of a day with `job` added (job ids have no comma)."""
    if not job:
        return jobs
    names = set(jobs.split(",")) - {""}
    return jobs if job in names else ",".join(sorted(names | {job}))

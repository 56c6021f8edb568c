"""The one way our processes open a SQLite store (decisions, portfolio, budgets, caches, the
coordinator's registry): autocommit (transactions are explicit `BEGIN`s), shareable between
threads behind the caller's own lock, write-ahead log with `synchronous=NORMAL` (a committed
transaction survives a process crash; a power cut may lose the last few, never corrupt)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_store(path: Path, cache_kib: int | None = None) -> sqlite3.Connection:
    """A connection to the store at `path` (made with its folder if absent), with a page cache
    of `cache_kib` KiB if given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    if cache_kib is not None:
        db.execute(f"PRAGMA cache_size=-{cache_kib}")
    return db

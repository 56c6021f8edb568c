"""The bank's pseudonyms of the ids it asked about, kept across restarts under the key they
were made with (SQLite in the state directory, 0600, with a bounded in-memory front).

A pseudonym costs three X25519 multiplications (blind, the coordinator's key, unblind; ~100
core-µs), so a bank that scores its portfolio again, or whose decision service restarts, asks
the coordinator only about ids it has not asked about before. Everything is dropped when the
coordinator's key changes (its id comes back with every evaluation, and the coordinator refuses a
scoring request whose pseudonyms were made under another key). The file says which enterprises the
bank asked about, as its decision store does; it holds nothing another party could not make.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from common.sqlite import open_store

MEMORY_IDS = 1_000_000  # ids whose pseudonym is also kept in memory
_CHUNK = 900  # parameters in one IN (...) list
_SCAN_FROM = 100_000  # ids missing from memory from which the whole file is read instead
_CACHE_KIB = 65536


def cache_path(state_dir: Path) -> Path:
    """Where a bank keeps its pseudonyms."""
    return Path(state_dir) / "scoring" / "pseudonyms.sqlite"


class PseudonymCache:
    """Pseudonyms by id under one key id; thread-safe."""

    def __init__(self, path: Path, memory_ids: int = MEMORY_IDS) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # SQLite gives its WAL and shared-memory files the same mode
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self.memory_ids = memory_ids
        self._db = open_store(path, _CACHE_KIB)
        self._db.execute("CREATE TABLE IF NOT EXISTS pseudonyms (id TEXT PRIMARY KEY, "
                         "pseudonym BLOB NOT NULL) WITHOUT ROWID")
        self._db.execute("CREATE TABLE IF NOT EXISTS key (key_id TEXT NOT NULL)")
        row = self._db.execute("SELECT key_id FROM key").fetchone()
        self.key_id: str = row[0] if row else ""
        self._memory: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def lookup(self, ids: Sequence[str]) -> tuple[dict[str, bytes], str]:
        """The pseudonyms kept for any of `ids`, and the key id they were made under."""
        with self._lock:
            memory = self._memory
            found = {i: memory[i] for i in ids if i in memory}
            rest = sorted({i for i in ids if i not in found})
            if len(rest) >= _SCAN_FROM:  # one pass over the file beats a lookup per id
                wanted = set(rest)
                found.update(row for row in self._db.execute(
                    "SELECT id, pseudonym FROM pseudonyms") if row[0] in wanted)
                rest = []
            for start in range(0, len(rest), _CHUNK):
                chunk = rest[start:start + _CHUNK]
                found.update(self._db.execute(
                    f"SELECT id, pseudonym FROM pseudonyms WHERE id IN "  # noqa: S608
                    f"({','.join('?' * len(chunk))})", chunk))
            self._remember(found)
            return found, self.key_id

    def store(self, key_id: str, fresh: Mapping[str, bytes]) -> None:
        """Keep `fresh`, made under `key_id`; everything made under another key is dropped."""
        with self._lock:
            self._db.execute("BEGIN")
            if key_id != self.key_id:
                self._db.execute("DELETE FROM pseudonyms")
                self._db.execute("DELETE FROM key")
                self._db.execute("INSERT INTO key VALUES (?)", (key_id,))
                self._memory = {}
                self.key_id = key_id
            self._db.executemany("INSERT OR REPLACE INTO pseudonyms VALUES (?,?)",
                                 sorted(fresh.items()))
            self._db.execute("COMMIT")
            self._remember(fresh)

    def forget(self) -> None:
        """Drop everything (the coordinator's key changed)."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM pseudonyms")
            self._db.execute("DELETE FROM key")
            self._db.execute("COMMIT")
            self._memory = {}
            self.key_id = ""

    def _remember(self, found: Mapping[str, bytes]) -> None:
        if len(self._memory) + len(found) > self.memory_ids:
            self._memory = {}  # full: start over (the file still has them all)
        if len(found) <= self.memory_ids:
            self._memory.update(found)

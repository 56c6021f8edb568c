"""Snapshot versions that name one content for the life of a node's state directory.

A version is `v<n>-<12 hex>`. The hex is the start of a keyed HMAC of the table's content (the
key, `snapshot.key`, never leaves the state directory), so whoever sees a version learns only
whether two snapshots are equal. `n` is the content's number in a durable registry beside the
key (`snapshot_versions.sqlite`): contents are numbered in the order they first appeared, and
a content seen again (a reload, a restart, another process on the same state directory such as
the bank's decision service, a table put back to earlier rows) gets the number it had. So a
version names a content, not a load: the same table is the same version in every process and
after every restart, and a version kept in a decision record can always be matched.

Registering is one SQLite transaction (insert the digest if new, read its number), safe for
several processes and threads at once. The registry remembers a check of the key it was made
with. A key or registry that cannot be read or written (checked when it is opened, not only at
the first new content), is damaged, or does not match the other raises `SnapshotRegistryError`
naming the file: a version is never silently made up another way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import os
import secrets
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from common.errors import FedcreditError
from common.sqlite import open_store

KEY_FILE = "snapshot.key"
REGISTRY_FILE = "snapshot_versions.sqlite"
KEY_BYTES = 32
VERSION_HEX = 12
SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshot_versions (
    number INTEGER PRIMARY KEY AUTOINCREMENT,
    digest TEXT NOT NULL UNIQUE,
    first_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS registry_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
T = TypeVar("T")
_FIND = "SELECT number FROM snapshot_versions WHERE digest=?"


class SnapshotRegistryError(FedcreditError):
    """The snapshot key or the version registry cannot be read or written; names the file."""


def snapshot_key(state_dir: Path) -> bytes:
    """This node's private key for snapshot digests, made (0600) on first use.

    Creation is atomic (a whole file linked into place, never replaced), so processes starting
    together on one state directory all use the same key. A key file of the wrong size is an
    error, not replaced: a new key would give every content a new version."""
    path = Path(state_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(KEY_BYTES))
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    try:
        key = path.read_bytes()
    except OSError as err:
        raise SnapshotRegistryError(f"cannot read the snapshot key {path}: {err.strerror}") from err
    if len(key) != KEY_BYTES:
        raise SnapshotRegistryError(
            f"snapshot key {path} holds {len(key)} bytes, expected {KEY_BYTES}; restore it from a "
            f"backup (a new key would give every table a new version)")
    return key


class SnapshotVersions:
    """The node's snapshot key and its durable registry of content numbers (thread-safe)."""

    def __init__(self, key: bytes, path: Path) -> None:
        """Open (or make) the registry at `path` for `key`. It must be writable now, not only at
        the first new content, and made with this key: a replaced key would silently give every
        content a new version, so it is refused."""
        self.key, self.path = key, path
        self._lock = threading.Lock()
        try:
            self._db = open_store(path)
            self._db.executescript(SCHEMA)
            (check,) = self._db.execute("PRAGMA quick_check").fetchone()
        except (sqlite3.Error, OSError) as err:
            raise self._error(err) from err
        if check != "ok":
            raise SnapshotRegistryError(f"snapshot version registry {path} is damaged ({check}); "
                                        f"restore it from a backup")
        mine = hmac.new(key, b"fedcredit.snapshot.registry\0", hashlib.sha256).hexdigest()[:16]
        found = self._transaction(lambda db: _bind(db, mine))
        if found != mine:
            raise SnapshotRegistryError(
                f"snapshot version registry {path} was made with another snapshot key than "
                f"{path.parent / KEY_FILE} (was the key replaced?); restore that key from a "
                f"backup (a new key would give every table a new version)")

    @classmethod
    def open(cls, state_dir: Path) -> SnapshotVersions:
        """The key and registry in `state_dir` (both made on first use; the key first)."""
        key_path, path = Path(state_dir) / KEY_FILE, Path(state_dir) / REGISTRY_FILE
        if path.exists() and not key_path.exists():
            raise SnapshotRegistryError(
                f"snapshot key {key_path} is missing but {path} numbers contents by it; restore "
                f"the key from a backup (a new key would give every table a new version)")
        return cls(snapshot_key(state_dir), path)

    def number(self, digest: str) -> int:
        """The number of the content with this (full, hex) digest: registered now if new."""
        return self._transaction(lambda db: _register(db, digest))

    def version(self, digest: str) -> str:
        """`v<number>-<12 hex>` of the content with this digest."""
        return f"v{self.number(digest)}-{digest[:VERSION_HEX]}"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` in one write transaction (other processes wait for it, up to SQLite's
        timeout); any SQLite error becomes a `SnapshotRegistryError` naming the file."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    done = work(self._db)
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as err:
                raise self._error(err) from err
        return done

    def _error(self, err: sqlite3.Error | OSError) -> SnapshotRegistryError:
        text = str(err)
        if "readonly" in text or "unable to open" in text or "permission" in text.lower():
            hint = "the node must be able to write it and its folder; check their permissions"
        elif "locked" in text or "busy" in text:
            hint = "another process held it locked too long; try again"
        else:
            hint = "it may be damaged or not a registry; restore it from a backup"
        return SnapshotRegistryError(
            f"snapshot version registry {self.path}: {text}; {hint} (snapshot versions "
            f"cannot be named without it)")


def _bind(db: sqlite3.Connection, key_check: str) -> str:
    """The registry's key check (this one if it had none), after a write proving it writable."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    db.execute("INSERT INTO registry_meta VALUES ('key_check', ?) ON CONFLICT (name) DO NOTHING",
               (key_check,))
    db.execute("INSERT INTO registry_meta VALUES ('last_opened', ?) ON CONFLICT (name) "
               "DO UPDATE SET value = excluded.value", (now,))
    (found,) = db.execute("SELECT value FROM registry_meta WHERE name='key_check'").fetchone()
    return str(found)


def _register(db: sqlite3.Connection, digest: str) -> int:
    """The digest's number, the next one if it is new (the write lock is held since BEGIN)."""
    row = db.execute(_FIND, (digest,)).fetchone()
    if row is None:
        db.execute("INSERT INTO snapshot_versions (digest, first_seen) VALUES (?, ?)",
                   (digest, dt.datetime.now(dt.UTC).isoformat(timespec="seconds")))
        row = db.execute(_FIND, (digest,)).fetchone()
    return int(row[0])

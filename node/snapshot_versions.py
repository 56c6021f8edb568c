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
several processes and threads at once. A key or registry that cannot be read or written raises
`SnapshotRegistryError` naming the file: a version is never silently made up another way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import sqlite3
import tempfile
import threading
from pathlib import Path

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
"""
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

    @classmethod
    def open(cls, state_dir: Path) -> SnapshotVersions:
        """The key and registry in `state_dir` (both made on first use)."""
        return cls(snapshot_key(state_dir), Path(state_dir) / REGISTRY_FILE)

    def number(self, digest: str) -> int:
        """The number of the content with this (full, hex) digest: registered now if new."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    row = self._db.execute(_FIND, (digest,)).fetchone()
                    if row is None:  # new: the next number (the write lock is held since BEGIN)
                        self._db.execute(
                            "INSERT INTO snapshot_versions (digest, first_seen) VALUES (?, ?)",
                            (digest, dt.datetime.now(dt.UTC).isoformat(timespec="seconds")))
                        row = self._db.execute(_FIND, (digest,)).fetchone()
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as err:
                raise self._error(err) from err
        return int(row[0])

    def version(self, digest: str) -> str:
        """`v<number>-<12 hex>` of the content with this digest."""
        return f"v{self.number(digest)}-{digest[:VERSION_HEX]}"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _error(self, err: sqlite3.Error | OSError) -> SnapshotRegistryError:
        text = str(err)
        if "readonly" in text or "unable to open" in text:
            hint = "the node must be able to write it and its folder; check their permissions"
        else:
            hint = "it may be damaged or not a registry; restore it from a backup"
        return SnapshotRegistryError(
            f"snapshot version registry {self.path}: {text}; {hint} (snapshot versions "
            f"cannot be named without it)")

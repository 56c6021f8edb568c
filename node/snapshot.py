"""Live data at a node: versioned table snapshots, re-read on a schedule or on demand.

A snapshot is one validated `NodeTable` with its training view, a version and the time it was
loaded. The node holds exactly one current snapshot and swaps it as one reference under a lock,
so a request or a training job that took a snapshot keeps it whole while a newer one arrives.
A reload validates exactly like start-up (`node.datasource.load_table`); a table that fails is
refused: the node keeps serving the last good snapshot, logs and audits why (without a value or
an id) and reports the refusal with its status to the coordinator.

Files are re-read only when their modification time or size changed (and a file that changes
while it is read is read again at the next check); SQL sources re-run their query each time.
A reload whose content equals the current snapshot's keeps the current snapshot.

The version is `v<n>-<12 hex>` (`node.snapshot_versions`): the hex is an HMAC of the table's
content under a key that never leaves the node (`state/snapshot.key`), so it tells anyone who
sees it only whether two snapshots are equal, never anything that could be matched against a
guessed table; `n` numbers contents in the order the node's state directory first saw them. A
version names a content, not a load: every process on the state directory (the node, the
bank's decision service) and every restart gives the same content the same version, and a
table put back to earlier content gets its earlier version again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from common.audit import AuditLog
from common.errors import DataValidationError
from node.config import DataConfig
from node.datasource import NodeTable, Role, load_table
from node.findings import TableValidationError
from node.snapshot_versions import SnapshotVersions

log = logging.getLogger(__name__)

Outcome = Literal["loaded", "unchanged", "refused", "busy"]
Loader = Callable[[DataConfig, Role], NodeTable]
Stamp = tuple[int, int] | None
"""(mtime in ns, size) of a file source; None for SQL (its query runs again every time)."""


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One validated table as loaded at one time; never changed once made."""

    table: NodeTable
    training: NodeTable
    version: str
    loaded_at: float
    digest: str  # the full keyed content digest: stays in this process
    stamp: Stamp = None


@dataclass(frozen=True)
class Refusal:
    """Why the last reload was refused (value-free) and when."""

    reason: str
    at: float


@dataclass(frozen=True)
class ReloadResult:
    """What one reload did, and the snapshot served after it."""

    outcome: Outcome
    snapshot: Snapshot
    message: str


def content_digest(table: NodeTable, key: bytes) -> str:
    """Keyed digest of the table's features, ids (in order), values and labels."""
    mac = hmac.new(key, b"fedcredit.snapshot.v1\0", hashlib.sha256)
    mac.update("\0".join(table.features).encode() + b"\1")
    mac.update("\0".join(table.ids).encode() + b"\1")
    mac.update(table.X.tobytes())
    if table.y is not None:
        mac.update(b"\1" + table.y.tobytes())
    return mac.hexdigest()


def snapshot_version(table: NodeTable, versions: SnapshotVersions) -> str:
    """`v<n>-<12 hex of the keyed content digest>`, registered in `versions` if new."""
    return versions.version(content_digest(table, versions.key))


def source_stamp(cfg: DataConfig) -> Stamp:
    """A file source's (mtime_ns, size), or None for SQL or a file that cannot be read."""
    if cfg.source == "sql" or cfg.path is None:
        return None
    try:
        found = os.stat(cfg.path)
    except OSError:
        return None
    return (found.st_mtime_ns, found.st_size)


def public_reason(err: DataValidationError) -> str:
    """The refusal as the coordinator and the audit log may see it: columns and kinds of
    problems, never a cell value, an id or a row number."""
    if not isinstance(err, TableValidationError):
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return first.split(": cannot read the table:")[0] + (
            ": cannot read the table" if ": cannot read the table:" in first else "")
    by_column: dict[str, int] = {}
    general: list[str] = []
    for problem in err.problems:
        if problem.column is None:
            general.append(problem.message)
        elif problem.rows:
            by_column[problem.column] = by_column.get(problem.column, 0) + 1
        else:
            general.append(f"column {problem.column!r} {problem.message}")
    parts = general + [f"column {name!r}: bad values in {count}{'+' if count >= 10 else ''} "
                       f"row(s)" for name, count in by_column.items()]
    return f"{err.total:,} problem(s): " + "; ".join(parts)


class LiveTable:
    """The node's current snapshot, and the reloads that replace it (thread-safe)."""

    def __init__(self, cfg: DataConfig, role: Role, versions: SnapshotVersions,
                 audit: AuditLog | None, first: NodeTable, *, loader: Loader = load_table) -> None:
        """Raises `SnapshotRegistryError` if the first table's version cannot be registered."""
        self.cfg, self.role, self.audit, self.loader = cfg, role, audit, loader
        self.versions = versions
        self._lock = threading.Lock()  # guards the swap and the status
        self._reload_lock = threading.Lock()  # one reload at a time
        self.refusal: Refusal | None = None
        self.changed = threading.Event()
        """Set whenever the status changes (new snapshot or refusal): the heartbeat sends it."""
        self._current = self._make(first, source_stamp(cfg), content_digest(first, versions.key))

    def _make(self, table: NodeTable, stamp: Stamp, digest: str) -> Snapshot:
        """A new snapshot, its version from the registry (not under the swap lock: the registry
        may wait for another process)."""
        return Snapshot(table=table, training=table.training_view(),
                        version=self.versions.version(digest), loaded_at=time.time(),
                        digest=digest, stamp=stamp)

    def current(self) -> Snapshot:
        """The snapshot to use for one whole request or job: take it once, keep it."""
        with self._lock:
            return self._current

    def reload(self, *, force: bool = False, why: str = "schedule") -> ReloadResult:
        """Read the source again if it may have changed (always when ``force``), validate it and
        swap it in; a bad table is refused and the current snapshot kept. A registry that
        cannot be written raises `SnapshotRegistryError`, the current snapshot kept."""
        with self._reload_lock:
            before = self.current()
            stamp = source_stamp(self.cfg)
            if not force and stamp is not None and stamp == before.stamp:
                return ReloadResult("unchanged", before, "source unchanged")
            try:
                table = self.loader(self.cfg, self.role)
            except DataValidationError as err:
                if stamp is not None and source_stamp(self.cfg) != stamp:
                    return self._busy(before)
                return self._refuse(before, err, why)
            if stamp is not None and source_stamp(self.cfg) != stamp:
                return self._busy(before)
            digest = content_digest(table, self.versions.key)
            if digest == before.digest:
                with self._lock:  # same content: same version, remember the file's new stamp
                    self._current = Snapshot(table=before.table, training=before.training,
                                             version=before.version, loaded_at=before.loaded_at,
                                             digest=before.digest, stamp=stamp)
                    cleared, self.refusal = self.refusal is not None, None
                if cleared:
                    self.changed.set()
                return ReloadResult("unchanged", before, "content unchanged")
            new = self._make(table, stamp, digest)
            with self._lock:
                self._current, self.refusal = new, None
            self.changed.set()
            log.info("data snapshot %s loaded (%s): %d rows, %d features (was %s)", new.version,
                     why, table.rows, len(table.features), before.version)
            if self.audit is not None:
                self.audit.append("data.loaded", purpose="data refresh", rows=table.rows,
                                  details={"version": new.version, "previous": before.version,
                                           "trigger": why})
            return ReloadResult("loaded", new, f"loaded {new.version}")

    def _busy(self, before: Snapshot) -> ReloadResult:
        log.info("data source changed while it was read; reading it again at the next check")
        return ReloadResult("busy", before, "source changed while it was read; try again")

    def _refuse(self, before: Snapshot, err: DataValidationError, why: str) -> ReloadResult:
        reason = public_reason(err)
        with self._lock:
            self.refusal = Refusal(reason=reason, at=time.time())
            # the bad file is not retried until it changes again
            self._current = Snapshot(table=before.table, training=before.training,
                                     version=before.version, loaded_at=before.loaded_at,
                                     digest=before.digest, stamp=source_stamp(self.cfg))
        self.changed.set()
        log.warning("new data refused (%s), still serving snapshot %s: %s", why, before.version,
                    reason)
        if self.audit is not None:
            self.audit.append("data.refused", purpose="data refresh",
                              details={"reason": reason, "serving": before.version,
                                       "trigger": why})
        return ReloadResult("refused", before, f"refused, still serving {before.version}: "
                                               f"{reason}")

    def every(self, seconds: float, wait: Callable[[float], bool]) -> None:
        """Reload every ``seconds`` until ``wait`` (e.g. a stop event's) returns True."""
        if seconds <= 0:
            return
        while not wait(seconds):
            try:
                self.reload()
            except Exception:  # a scheduler must outlive one bad read; the cause is logged
                log.exception("scheduled data reload failed")

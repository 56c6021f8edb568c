"""A feature node's reference snapshots for early warning, kept in its own state directory.

The reference of a model is the node's table as it was when the model was trained (kept when
the node stores its part of the model) or, for a model trained before references were kept,
when a bank first set up scoring with it. Each reference is one `.npz` (schema-versioned, no
pickle) under `monitoring/<job>/reference-<snapshot version>.npz`, with `current.json` naming
the one in force; `rebase` makes a newer snapshot the reference and keeps the older files, so
every level and PSI a node gave can be traced to the reference it was measured against. The
files hold the node's own ids and values and never leave the node.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import DataValidationError
from common.files import atomic_write, load_state, state_bytes
from node.alignment import check_job_id
from node.snapshot import Snapshot

POINTER = "current.json"


@dataclass(frozen=True)
class Reference:
    """One kept snapshot: ids, feature names and values, its version and why it was kept."""

    version: str
    ids: np.ndarray  # unicode
    features: tuple[str, ...]
    X: np.ndarray
    kept_at: float
    trigger: str


class ReferenceStore:
    """The references of every model this node holds a part of (thread-safe, cached)."""

    def __init__(self, state_dir: Path) -> None:
        self.root = Path(state_dir) / "monitoring"
        self._lock = threading.Lock()
        self._cache: dict[str, Reference] = {}

    def _dir(self, job: str) -> Path:
        return self.root / check_job_id(job)

    def keep(self, job: str, snapshot: Snapshot, trigger: str) -> str:
        """Keep `snapshot` as the reference of `job` unless one is kept already; its version."""
        with self._lock:
            pointer = self._dir(job) / POINTER
            if pointer.exists():
                return str(json.loads(pointer.read_text())["version"])
            return self._write(job, snapshot, trigger)

    def rebase(self, job: str, snapshot: Snapshot, trigger: str) -> str:
        """Make `snapshot` the reference of `job` from now on (older references are kept)."""
        with self._lock:
            return self._write(job, snapshot, trigger)

    def _write(self, job: str, snapshot: Snapshot, trigger: str) -> str:
        table = snapshot.table
        folder = self._dir(job)
        name = f"reference-{snapshot.version}.npz"
        kept_at = time.time()
        atomic_write(folder / name, state_bytes({
            "ids": np.asarray(table.ids, dtype=str), "X": np.asarray(table.X),
            "features": list(table.features), "version": snapshot.version,
            "kept_at": kept_at, "trigger": trigger}))
        atomic_write(folder / POINTER, json.dumps({"version": snapshot.version, "file": name,
                                                   "kept_at": kept_at,
                                                   "trigger": trigger}).encode())
        self._cache.pop(job, None)
        return snapshot.version

    def load(self, job: str) -> Reference | None:
        """The reference in force for `job`, or None when none is kept."""
        with self._lock:
            pointer = self._dir(job) / POINTER
            if not pointer.exists():
                return None
            meta = json.loads(pointer.read_text())
            found = self._cache.get(job)
            if found is not None and found.version == meta["version"]:
                return found
            path = self._dir(job) / str(meta["file"])
            if not path.exists() or path.parent != self._dir(job):
                raise DataValidationError(f"{path}: the reference snapshot named by {pointer} "
                                          f"is missing")
            state = load_state(path.read_bytes(), str(path))
            found = Reference(version=str(state["version"]), ids=state["ids"],
                              features=tuple(state["features"]), X=state["X"],
                              kept_at=float(state["kept_at"]), trigger=str(state["trigger"]))
            self._cache[job] = found
            return found


def aligned(reference: Reference, ids: list[str], features: list[str]) -> np.ndarray:
    """The reference's values for `ids` (rows) and `features` (columns) of a current table;
    NaN where the reference has no such enterprise or column (vectorised lookup)."""
    out = np.full((len(ids), len(features)), np.nan)
    if reference.ids.size == 0 or not ids:
        return out
    order = np.argsort(reference.ids, kind="stable")
    keys = reference.ids[order]
    wanted = np.asarray(ids, dtype=str)
    pos = np.minimum(np.searchsorted(keys, wanted), keys.size - 1)
    found = keys[pos] == wanted
    rows = order[pos[found]]
    for k, name in enumerate(features):
        if name in reference.features:
            out[found, k] = reference.X[rows, reference.features.index(name)]
    return out

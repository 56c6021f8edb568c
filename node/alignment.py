"""Per-job alignment results in the node's state directory (the PSI cache).

Beside each alignment the node keeps a fingerprint of its own id column as it was then (SHA-256
over the ids in table order, and the row count): alignments store row numbers, so a table whose
rows were reordered, added or removed since must not be trained on. The fingerprint never leaves
the node (a hash of a known id list could be matched) and is never logged.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from common.errors import DataValidationError, ProtocolError
from common.ids import check_job_id
from common.names import InvalidPartyName, check_party_name

__all__ = ["AlignmentStore", "FeatureAlignment", "LabelAlignment", "check_job_id"]


class AlignmentStale(DataValidationError):
    """A stored alignment does not belong to the node's current table (or predates fingerprints)."""


class TableFingerprint(BaseModel):
    """A table's id column in order, as one hash: what an alignment's row numbers refer to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = 1
    rows: int
    sha256: str
    snapshot: str = ""
    """The node's snapshot version the alignment was made on (empty before live data)."""

    @classmethod
    def of(cls, ids: Sequence[str], snapshot: str = "") -> TableFingerprint:
        """SHA-256 over the ids, each prefixed by its UTF-8 length, so any reorder changes it."""
        encoded = [ident.encode() for ident in ids]
        digest = hashlib.sha256(b"fedcredit.table-ids.v1\0")
        digest.update(np.asarray([len(e) for e in encoded], dtype="<u4").tobytes())
        digest.update(b"".join(encoded))
        return cls(rows=len(encoded), sha256=digest.hexdigest(), snapshot=snapshot)

    def same_table(self, other: TableFingerprint) -> bool:
        """Whether both describe the same ids in the same order (whatever the snapshots)."""
        return (self.rows, self.sha256) == (other.rows, other.sha256)


@dataclass(frozen=True)
class LabelAlignment:
    """At the label node: the job's row order and, per peer, which of its rows the peer holds.

    Training position p is the label node's table row `order[p]`; the order is a random
    permutation drawn once per job, so positions tell a feature node nothing about the
    bank's file.
    """

    order: np.ndarray  # int64, a permutation of the table's rows
    peer_rows: np.ndarray  # int64, table rows the peer also holds, ascending


@dataclass(frozen=True)
class FeatureAlignment:
    """At a feature node: its rows in the intersection and their training positions."""

    n_rows: int
    positions: np.ndarray  # int64 training positions (in the label node's order)
    own_rows: np.ndarray  # int64 rows of this node's table, matching `positions`


class AlignmentStore:
    """Reads and writes alignment files under `<state>/alignment/<job>/`."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "alignment"

    def _dir(self, job_id: str) -> Path:
        return self.root / check_job_id(job_id)

    def job_order(self, job_id: str, n_rows: int) -> np.ndarray:
        """The label node's random row order for a job, drawn with OS randomness on first use.

        A stored order for another number of rows is refused, never silently redrawn: the
        job's other files refer to it."""
        path = self._dir(job_id) / "order.npy"
        if path.exists():
            stored: np.ndarray = np.load(path)
            if len(stored) != n_rows:
                raise AlignmentStale(
                    f"alignment {job_id} was made for a table of {len(stored)} rows, the table "
                    f"now has {n_rows}; align again under a new job id")
            return stored
        rows = list(range(n_rows))
        secrets.SystemRandom().shuffle(rows)
        order = np.asarray(rows, dtype=np.int64)
        _atomic_save(path, order)
        return order

    def save_label(self, job_id: str, peer: str, peer_rows: np.ndarray) -> None:
        _atomic_save(self._dir(job_id) / f"peer-{_safe(peer)}.npy", peer_rows.astype(np.int64))

    def save_fingerprint(self, job_id: str, ids: Sequence[str], snapshot: str = "") -> None:
        """Record which table (ids in order) this job's alignment refers to; a job id reused
        for another table is refused, since its other files refer to the first."""
        path = self._dir(job_id) / "table.json"
        found = TableFingerprint.of(ids, snapshot)
        if path.exists() and not self._fingerprint(path).same_table(found):
            raise AlignmentStale(f"alignment {job_id} was made on another version of this "
                                 "table; align again under a new job id")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(found.model_dump_json())
        os.replace(tmp, path)

    def verify(self, job_id: str, ids: Sequence[str], who: str, source: str,
               label: str, snapshot: str = "") -> None:
        """Refuse to train on an alignment that is missing, predates fingerprints, or was
        made on another version of the table (`who`/`source`/`label` name it for the fix;
        `snapshot` is the version loaded now, named when a newer one replaced the aligned)."""
        folder = self._dir(job_id)
        fix = (f"re-run `fedcredit align --label {label} --job-id NEW` and train on the new "
               "alignment")
        if not folder.is_dir():
            raise AlignmentStale(f"{who}: no alignment {job_id} here; {fix}")
        path = folder / "table.json"
        if not path.exists():
            raise AlignmentStale(f"{who}: alignment {job_id} was saved without a fingerprint "
                                 f"of table {source} (before this version), so it cannot be "
                                 f"checked against the table; {fix}")
        stored = self._fingerprint(path)
        if not stored.same_table(TableFingerprint.of(ids)):
            newer = (f": a newer data snapshot ({snapshot}) was loaded than the one it was "
                     f"made on ({stored.snapshot})"
                     if snapshot and stored.snapshot and snapshot != stored.snapshot else "")
            raise AlignmentStale(f"{who}: table {source} changed since alignment {job_id}"
                                 f"{newer} (rows reordered, added, removed or re-exported); "
                                 f"{fix}")

    @staticmethod
    def _fingerprint(path: Path) -> TableFingerprint:
        try:
            return TableFingerprint.model_validate(json.loads(path.read_text()))
        except (ValueError, ValidationError) as err:
            raise AlignmentStale(f"{path}: unreadable table fingerprint ({err}); align again "
                                 "under a new job id") from err

    def load_order(self, job_id: str) -> np.ndarray:
        """The label node's stored row order for a job (never drawn here)."""
        path = self._dir(job_id) / "order.npy"
        if not path.exists():
            raise AlignmentStale(f"alignment {job_id} holds no row order here: align again")
        order: np.ndarray = np.load(path)
        return order

    def load_label(self, job_id: str, peer: str) -> LabelAlignment:
        folder = self._dir(job_id)
        return LabelAlignment(order=np.load(folder / "order.npy"),
                              peer_rows=np.load(folder / f"peer-{_safe(peer)}.npy"))

    def save_feature(self, job_id: str, alignment: FeatureAlignment) -> None:
        data = np.stack([alignment.positions, alignment.own_rows]).astype(np.int64)
        path = self._dir(job_id) / "feature.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, data=data, n_rows=np.int64(alignment.n_rows))
        os.replace(tmp, path)

    def load_feature(self, job_id: str) -> FeatureAlignment:
        path = self._dir(job_id) / "feature.npz"
        if not path.exists():
            raise AlignmentStale(f"alignment {job_id} holds no rows here (a cardinality-only "
                                 "run?): align again in full mode")
        with np.load(path) as f:
            data = f["data"]
            return FeatureAlignment(n_rows=int(f["n_rows"]), positions=data[0], own_rows=data[1])


def _safe(name: str) -> str:
    try:
        return check_party_name(name)
    except InvalidPartyName as err:
        raise ProtocolError(str(err)) from err


def _atomic_save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)

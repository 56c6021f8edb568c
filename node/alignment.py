"""Per-job alignment results in the node's state directory (the PSI cache)."""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import ProtocolError
from common.ids import check_job_id

__all__ = ["AlignmentStore", "FeatureAlignment", "LabelAlignment", "check_job_id"]


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
        """The label node's random row order for a job, drawn with OS randomness on first use."""
        path = self._dir(job_id) / "order.npy"
        if path.exists():
            stored: np.ndarray = np.load(path)
            if len(stored) == n_rows:
                return stored
        rows = list(range(n_rows))
        secrets.SystemRandom().shuffle(rows)
        order = np.asarray(rows, dtype=np.int64)
        _atomic_save(path, order)
        return order

    def save_label(self, job_id: str, peer: str, peer_rows: np.ndarray) -> None:
        _atomic_save(self._dir(job_id) / f"peer-{_safe(peer)}.npy", peer_rows.astype(np.int64))

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
        with np.load(self._dir(job_id) / "feature.npz") as f:
            data = f["data"]
            return FeatureAlignment(n_rows=int(f["n_rows"]), positions=data[0], own_rows=data[1])


def _safe(name: str) -> str:
    if not re.match(r"^[a-z0-9-]{1,63}$", name):
        raise ProtocolError(f"party name {name!r} is not lowercase letters, digits and '-'")
    return name


def _atomic_save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)

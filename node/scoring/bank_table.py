"""The bank's own rows for scoring, following its live table (`node.snapshot.LiveTable`).

The scorer (and the decision service around it) runs beside the bank's node, on the same data
source and the same state directory, whose snapshot key and version registry
(`node.snapshot_versions`) it shares: a version is the content's number there, not a count of
this process's loads, so the scorer and the node (and either after a restart) give the same
table the same version, and a decision's recorded version can be matched to the node's.

A `BankRows` is one whole snapshot prepared for scoring (the model's columns, the credit-line
basis, the row of each id) and is swapped in as one reference once it is complete: a request
takes one and keeps it, so no decision ever reads a half-loaded table, and each records the
version it used.
A background thread re-reads the source every `[data] refresh_seconds` (a file only when it
changed; SQL runs again), or, with 0 there, checks a file source's stamp every `FOLLOW_SECONDS`
so that a `fedcredit nodes reload` after the file changed is followed without a restart. A bad
table is refused (and logged by `LiveTable`): the current rows stay in use. A table given by
the caller (the demo, tests) is fixed: nothing is re-read (its version is still registered).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from node.columns import model_columns
from node.config import NodeConfig
from node.datasource import NodeTable, load_table
from node.snapshot import LiveTable, Snapshot
from node.snapshot_versions import SnapshotVersions

log = logging.getLogger(__name__)

FOLLOW_SECONDS = 2.0


@dataclass(frozen=True)
class BankRows:
    """One snapshot of the bank's table, ready for scoring; never changed once made."""

    table: NodeTable
    version: str
    row_of: dict[str, int]
    own: np.ndarray  # the model's columns, in the model's order
    basis: np.ndarray  # the credit-line basis column (NaN when the table has none)


class FollowsTable:
    """Mixin for the bank's scorer: `view` is the current `BankRows`, kept up to date."""

    view: BankRows
    _live: LiveTable | None = None
    _stop: threading.Event | None = None

    def follow_table(self, config: NodeConfig, table: NodeTable | None,
                     features: tuple[str, ...] | list[str], basis_column: str,
                     model: str) -> None:
        """Load (or take) the table, prepare its rows, and follow the source unless given."""
        self._features, self._basis_column, self._model = list(features), basis_column, model
        self._party = config.party
        versions = SnapshotVersions.open(Path(config.state_dir))
        live = LiveTable(config.data, "label", versions, None,
                         table or load_table(config.data, "label"))
        self.view = self._rows(live.current())
        if table is not None:
            return
        self._live, self._stop = live, threading.Event()
        seconds = config.data.refresh_seconds
        if seconds <= 0 and config.data.source != "sql":
            seconds = FOLLOW_SECONDS  # a stamp check: the file is read only when it changed
        if seconds > 0:
            threading.Thread(target=self._follow, args=(seconds,), name="bank-table",
                             daemon=True).start()

    def _rows(self, snapshot: Snapshot) -> BankRows:
        table = snapshot.table
        own = model_columns(table, self._features, party=self._party, model=self._model)
        basis = (table.X[:, table.features.index(self._basis_column)]
                 if self._basis_column in table.features else np.full(table.rows, np.nan))
        return BankRows(table=table, version=snapshot.version,
                        row_of={ident: row for row, ident in enumerate(table.ids)}, own=own,
                        basis=basis)

    def _follow(self, seconds: float) -> None:
        assert self._stop is not None
        while not self._stop.wait(seconds):
            try:
                self.reload_table()
            except Exception:  # the thread must outlive one bad read; the cause is logged
                log.exception("re-reading the bank's table failed; still using %s",
                              self.view.version)

    def reload_table(self, *, force: bool = False) -> str:
        """Re-read the source now if it may have changed; the version in use after it."""
        if self._live is None:
            return self.view.version
        result = self._live.reload(force=force, why="bank scorer")
        if result.snapshot.version != self.view.version:
            self.view = self._rows(result.snapshot)  # whole, then swapped as one reference
            log.info("bank scorer now uses data snapshot %s", self.view.version)
        return self.view.version

    def stop_following(self) -> None:
        if self._stop is not None:
            self._stop.set()

    # the current view's parts (a request takes `view` once instead) -------------------------
    @property
    def table(self) -> NodeTable:
        return self.view.table

    @property
    def version(self) -> str:
        return self.view.version

    @property
    def row_of(self) -> dict[str, int]:
        return self.view.row_of

    @property
    def own(self) -> np.ndarray:
        return self.view.own

    @property
    def basis(self) -> np.ndarray:
        return self.view.basis

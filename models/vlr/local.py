"""Vertical LR in one process: the declared driver over role objects (tests, benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence

from models.runtime import LocalRun as LocalRun
from models.runtime import run_local as run_declared
from models.vlr import EpochReport
from models.vlr.algorithm import ALGORITHM
from models.vlr.arbiter import Arbiter
from models.vlr.feature import FeatureParty
from models.vlr.label import LabelParty


def run_local(label: LabelParty, features: Sequence[FeatureParty], arbiter: Arbiter, *,
              stop_after_epoch: int | None = None, label_name: str = "label") -> LocalRun:
    """Train until L says stop (every party then keeps its best weights), or pause after
    `stop_after_epoch` without finishing (resume with new roles that `load_state_dict()`).
    The run's `reports` are the label node's `EpochReport`s."""
    run = run_declared(ALGORITHM, (label_name, label), {f.name: f for f in features},
                       label.config, job_id=label.job, stop_after=stop_after_epoch,
                       arbiter=arbiter, resume=label.next_epoch > 0)
    run.reports = [EpochReport(**r) for r in run.reports]
    return run

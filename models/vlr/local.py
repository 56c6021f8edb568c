"""In-process runner: drives L, every F and A through the network's step methods, counting bytes."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from models.vlr import EpochReport, StepKey
from models.vlr.arbiter import Arbiter
from models.vlr.feature import FeatureParty
from models.vlr.label import LabelParty
from models.vlr.layout import GradientParty


@dataclass
class LocalRun:
    """What a run did: per-epoch reports, wall time and bytes that crossed party boundaries."""

    reports: list[EpochReport] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_bytes: list[int] = field(default_factory=list)
    setup_seconds: float = 0.0
    setup_bytes: int = 0
    bytes_by_message: Counter[str] = field(default_factory=Counter)


class _Wire:
    def __init__(self, run: LocalRun) -> None:
        self.run, self.total = run, 0

    def carry(self, kind: str, data: bytes, copies: int = 1) -> bytes:
        self.run.bytes_by_message[kind] += len(data) * copies
        self.total += len(data) * copies
        return data


def run_local(
    label: LabelParty,
    features: Sequence[FeatureParty],
    arbiter: Arbiter,
    *,
    stop_after_epoch: int | None = None,
) -> LocalRun:
    """Train until L says stop (then every party keeps its best weights), or pause after
    `stop_after_epoch` without finishing (checkpoint with `state_dict()`, resume with new roles
    that `load_state_dict()` and a fresh Arbiter)."""
    run, wire = LocalRun(), None
    started = time.perf_counter()
    setup = _Wire(run)
    context = setup.carry("arbiter_context", arbiter.public_context(), copies=1 + len(features))
    label.open(context)
    plan = setup.carry("plan", label.plan(), copies=len(features))
    own = setup.carry("validation_context", label.validation_context(), copies=len(features))
    for party in features:
        if party.next_epoch != label.next_epoch:
            raise ValueError(
                f"{party.name} is at epoch {party.next_epoch}, L at {label.next_epoch}"
            )
        party.open(context, own, plan)
    run.setup_seconds, run.setup_bytes = time.perf_counter() - started, setup.total

    job = label.job
    while not label.stopped:
        epoch = label.next_epoch
        if stop_after_epoch is not None and epoch > stop_after_epoch:
            return run
        started, wire = time.perf_counter(), _Wire(run)
        for batch in range(label.n_batches):
            positions = wire.carry(
                "positions",
                label.batch_positions(StepKey(job, epoch, batch, "positions")),
                len(features),
            )
            forward = StepKey(job, epoch, batch, "forward")
            forwards = {
                f.name: wire.carry("forward", f.forward(forward, positions)) for f in features
            }
            residual = label.residual(StepKey(job, epoch, batch, "residual"), forwards)
            wire.carry("residual", residual, len(features))
            gradient, update = (
                StepKey(job, epoch, batch, "gradient"),
                StepKey(job, epoch, batch, "update"),
            )
            parties: list[tuple[str, GradientParty]] = [("label", label)]
            parties += [(f.name, f) for f in features]
            for name, holder in parties:
                request = wire.carry("gradient", holder.gradient(gradient, residual))
                answer = wire.carry("decrypted", arbiter.decrypt_gradient(gradient, name, request))
                holder.update(update, answer)
        validate = StepKey(job, epoch, -1, "validate")
        parts = {f.name: wire.carry("validation", f.validation_logits(validate)) for f in features}
        report = label.end_epoch(epoch, parts)
        for party in features:
            party.end_epoch(epoch, report.improved)
        run.reports.append(report)
        run.epoch_seconds.append(time.perf_counter() - started)
        run.epoch_bytes.append(wire.total)
    label.finish()
    for party in features:
        party.finish()
    return run

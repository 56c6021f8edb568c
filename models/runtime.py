"""In-process runtime: walks an algorithm's declaration over role objects, counting the bytes.

The same driver and step functions the network runs, with the relay replaced by direct calls; for
tests, benchmarks and pooled-data twins. Nothing is sealed here (there is no wire to seal for).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.errors import ProtocolError
from common.payload import Payload
from models.protocol import Algorithm, Call, Role, StepKey, To, address


@dataclass
class LocalRun:
    """What a run did: reports, wall time and bytes per round; with `capture`, every payload."""

    reports: list[Any] = field(default_factory=list)  # the driver's reports, as dicts
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_bytes: list[int] = field(default_factory=list)
    setup_seconds: float = 0.0
    setup_bytes: int = 0
    bytes_by_message: Counter[str] = field(default_factory=Counter)
    payloads: list[tuple[str, bytes]] = field(default_factory=list)
    stored: dict[str, dict[str, bytes]] = field(default_factory=dict)  # party -> STORE outputs
    final: dict[str, Any] | None = None  # a driver's `final` report (figures computed once)

    @property
    def tree_seconds(self) -> list[float]:
        return self.epoch_seconds

    @property
    def tree_bytes(self) -> list[int]:
        return self.epoch_bytes


class LocalNetwork:
    """The parties of one job as role objects in this process."""

    def __init__(self, algorithm: Algorithm, job_id: str, label: tuple[str, Any],
                 features: Mapping[str, Any], run: LocalRun, *, capture: bool = False) -> None:
        self.algorithm, self.job_id, self.record, self.capture = algorithm, job_id, run, capture
        self.label = label[0]
        self.features = tuple(features)
        self._roles: dict[str, tuple[Role, Any]] = {self.label: ("label", label[1])}
        self._roles.update({name: ("feature", obj) for name, obj in features.items()})
        self._memo: dict[str, dict[str, Any]] = {name: {} for name in self._roles}
        self.moved = 0
        self.vault: dict[str, bytes] = {}

    def _carry(self, kind: str, data: bytes) -> None:
        self.record.bytes_by_message[kind] += len(data)
        self.moved += len(data)
        if self.capture:
            self.record.payloads.append((kind, data))

    def run(self, step: str, epoch: int = 0, batch: int = 0,
            parts: Sequence[Payload] = (), *, extra: Mapping[str, Any] | None = None,
            at: Sequence[str] | None = None) -> dict[str, dict[str, Payload]]:
        roles = self.algorithm.role_of(step)
        callees = [p for p, (role, _) in self._roles.items()
                   if role in roles and (at is None or p in at)]
        replies: dict[str, dict[str, Payload]] = {}
        for party in callees:
            role, obj = self._roles[party]
            declared = self.algorithm.step(step, role)
            given = [p for p in parts if not p.recipient or p.recipient == party]
            for p in given:
                self._carry(p.name.split(":", 1)[0], p.data)
            key = StepKey(self.job_id, epoch, batch if declared.per_batch else -1, step)
            call = Call(key=key, inputs={p.name: p.data for p in given}, extra=extra or {},
                        me=party, label=self.label, features=self.features,
                        memo=self._memo[party])
            reply: dict[str, Payload] = {}
            for to, payload in address(declared, declared.run(obj, call), call):
                if to is To.STORE:
                    self.record.stored.setdefault(party, {})[payload.name] = payload.data
                    continue
                if to is To.DRIVER:
                    self._carry(payload.name, payload.data)
                if payload.name in reply:
                    raise ProtocolError(f"{party} sent {payload.name!r} twice")
                reply[payload.name] = payload
            replies[party] = reply
        return replies


def run_local(algorithm: Algorithm, label: tuple[str, Any], features: Mapping[str, Any],
              settings: Any, *, job_id: str = "local", stop_after: int | None = None,
              capture: bool = False, **driver_args: Any) -> LocalRun:
    """Drive a job to its end, or pause after round `stop_after` without finishing (the roles'
    `state_dict()` then resumes in new roles, with `resume=True`)."""
    run = LocalRun()
    net = LocalNetwork(algorithm, job_id, label, features, run, capture=capture)
    started = time.perf_counter()
    for progress in algorithm.drive(net, settings, **driver_args):
        now = time.perf_counter()
        if progress.kind == "setup":
            run.setup_seconds, run.setup_bytes = now - started, net.moved
        elif progress.kind == "final":
            run.final = progress.report
        else:
            run.reports.append(progress.report)
            run.epoch_seconds.append(now - started)
            run.epoch_bytes.append(net.moved)
            if stop_after is not None and int(progress.report["epoch"]) >= stop_after:
                break
        started, net.moved = time.perf_counter(), 0
    return run

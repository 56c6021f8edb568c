"""What the coordinator's ServerApp records: each stage on the wire and each round, as they happen.

`RecordingGrid` wraps Flower's Grid and logs every send-and-receive (stage, seconds, bytes);
`Recorder` supplies DefaultWorkflow's fit and evaluate steps and turns those logs into one
`RoundLog` per round, written to the progress file and the audit log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from flwr.app import Context, Message
from flwr.common import parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat
from flwr.proto.node_pb2 import NodeInfo
from flwr.server import LegacyContext
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
from flwr.serverapp import Grid
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.run import Run

from common.audit import AuditLog
from models.hfl.settings import JobSettings, epsilon_spent


@dataclass
class StageLog:
    """One send-and-receive: what stage, how long, what the banks reported computing (if any)."""

    round: int
    stage: str
    sent: int
    replies: int = 0
    errors: int = 0
    seconds: float = 0.0
    compute_s: float = 0.0
    startup_s: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0


ReplyObserver = Callable[[StageLog, Message], None]
"""Called with every reply that is not an error, after the stage's figures are counted."""


class RecordingGrid(Grid):
    """Flower's Grid with a log of every stage and a default per-stage timeout.

    Everything recorded is what the coordinator receives anyway: message sizes and timings.
    ``observers`` see each reply as it arrives (the local federation's tools add theirs).
    """

    def __init__(self, inner: Grid, *, timeout: float | None,
                 observers: Sequence[ReplyObserver] = ()) -> None:
        self.inner = inner
        self.timeout = timeout
        self.observers = list(observers)
        self.stages: list[StageLog] = []
        self.on_stage: list[Callable[[str, StageLog], None]] = []

    def set_run(self, run: Run) -> None:
        self.inner.set_run(run)

    @property
    def run(self) -> Run:
        return self.inner.run

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        return self.inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def get_nodes(self) -> Iterable[NodeInfo]:
        return self.inner.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.inner.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        out = list(messages)
        first = out[0] if out else None
        log = StageLog(round=_round_of(first), stage=_stage_of(first), sent=len(out),
                       bytes_sent=sum(_size(m) for m in out))
        for callback in self.on_stage:
            callback("send", log)
        started = time.perf_counter()
        replies = list(self.inner.send_and_receive(
            out, timeout=timeout if timeout is not None else self.timeout))
        log.seconds = time.perf_counter() - started
        for reply in replies:
            if reply.has_error():
                log.errors += 1
                continue
            log.replies += 1
            log.bytes_received += _size(reply)
            for observe in self.observers:
                observe(log, reply)
        self.stages.append(log)
        for callback in self.on_stage:
            callback("receive", log)
        return replies


def _round_of(msg: Message | None) -> int:
    try:
        return int(msg.metadata.group_id) if msg is not None else 0
    except ValueError:
        return 0


def _stage_of(msg: Message | None) -> str:
    if msg is None:
        return "none"
    configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
    if configs is not None and Key.STAGE in configs:
        return str(configs[Key.STAGE])
    return str(msg.metadata.message_type)


def _size(msg: Message) -> int:
    """Bytes of the message's objects as Flower ships them (before TLS)."""
    try:
        return sum(len(obj.deflate()) for obj in get_all_nested_objects(msg).values())
    except Exception:  # noqa: BLE001 - a size is a figure, never a reason to fail a round
        return 0


# rounds -------------------------------------------------------------------------------------
@dataclass
class RoundLog:
    """One round as the coordinator saw it."""

    round: int
    status: str = "running"
    banks_sampled: int = 0
    banks_aggregated: int = 0
    seconds: float = 0.0
    fit_seconds: float = 0.0
    client_compute_s: float = 0.0
    clientapp_startup_s: float = 0.0
    server_compute_s: float = 0.0
    waiting_s: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    auc: float | None = None
    epsilon: float | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)
    weights: list[list[float]] | None = None


class Recorder:
    """Fit and evaluate steps of DefaultWorkflow that time, count and report every round."""

    def __init__(self, settings: JobSettings, grid: RecordingGrid, fit: Any, *,
                 keep_weights: bool = False) -> None:
        self.settings = settings
        self.grid = grid
        self.fit_workflow = fit
        self.keep_weights = keep_weights
        """Keep every round's aggregate (the final one is always kept)."""
        self.rounds: list[RoundLog] = []
        self.noisy_rounds = 0
        self._started = 0.0
        self._first_stage = 0
        self._audit = AuditLog(settings.audit_path, "coordinator") if settings.audit_path else None
        grid.on_stage.append(self._on_stage)

    def progress(self, event: str, **facts: Any) -> None:
        if not self.settings.progress_path:
            return
        line = json.dumps({"event": event, "time": time.time(), **facts})
        with open(self.settings.progress_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def audit(self, event: str, **details: Any) -> None:
        if self._audit is not None:
            self._audit.append(event, job=self.settings.job_id, purpose="horizontal-training",
                               details=details)

    def _on_stage(self, phase: str, log: StageLog) -> None:
        self.progress(f"stage-{phase}", round=log.round, stage=log.stage, sent=log.sent,
                      replies=log.replies, errors=log.errors, seconds=round(log.seconds, 3))

    def fit(self, grid: Grid, context: Context) -> None:
        ctx = cast(LegacyContext, context)
        current = len(self.rounds) + 1
        record = RoundLog(round=current)
        self.rounds.append(record)
        self.progress("round-start", round=current)
        self._started = time.perf_counter()
        self._first_stage = len(self.grid.stages)
        before = ctx.state.array_records[MAIN_PARAMS_RECORD]
        self.fit_workflow(self.grid, ctx)
        after = ctx.state.array_records[MAIN_PARAMS_RECORD]
        record.fit_seconds = time.perf_counter() - self._started
        stages = self.grid.stages[self._first_stage:]
        record.banks_sampled = stages[0].sent if stages else 0
        record.banks_aggregated = stages[-1].replies if stages and after is not before else 0
        if self.settings.secagg:
            collect = [s for s in stages if s.stage == Stage.COLLECT_MASKED_VECTORS]
            record.banks_aggregated = collect[0].replies if collect and after is not before else 0
        record.status = "completed" if after is not before else "aborted"
        if record.status == "completed" and self.settings.dp:
            self.noisy_rounds += 1
        if self.settings.dp:
            record.epsilon = epsilon_spent(self.noisy_rounds, self.settings.dp_noise,
                                           self.settings.dp_delta)
        if self.keep_weights or current == self.settings.rounds:
            arrays = parameters_to_ndarrays(compat.arrayrecord_to_parameters(after, True))
            record.weights = [a.tolist() for a in arrays]

    def evaluate(self, grid: Grid, context: Context) -> None:
        from flwr.server.workflow.default_workflows import default_evaluate_workflow

        ctx = cast(LegacyContext, context)
        record = self.rounds[-1]
        default_evaluate_workflow(self.grid, ctx)
        history = ctx.history.metrics_distributed.get("auc", [])
        if history and history[-1][0] == record.round:
            record.auc = float(cast(float, history[-1][1]))
        self._close_round(record)

    def _close_round(self, record: RoundLog) -> None:
        record.seconds = time.perf_counter() - self._started
        stages = self.grid.stages[self._first_stage:]
        record.client_compute_s = sum(s.compute_s for s in stages)
        record.clientapp_startup_s = sum(s.startup_s for s in stages)
        record.server_compute_s = max(0.0, record.seconds - sum(s.seconds for s in stages))
        record.waiting_s = max(0.0, record.seconds - record.client_compute_s
                               - record.server_compute_s)
        record.bytes_sent = sum(s.bytes_sent for s in stages)
        record.bytes_received = sum(s.bytes_received for s in stages)
        record.stages = [asdict(s) for s in stages]
        facts = {k: v for k, v in asdict(record).items() if k not in ("stages", "weights")}
        self.progress("round-end", **facts)
        self.audit("hfl.round", round=record.round, status=record.status,
                   banks_aggregated=record.banks_aggregated, auc=record.auc,
                   epsilon=record.epsilon, secagg=self.settings.secagg)

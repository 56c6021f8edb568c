"""The coordinator's Flower ServerApp: FedAvg over banks with SecAgg+ and optional central DP.

Runs inside Flower's ``@app.main()`` with the legacy strategy API (the only one SecAgg+ supports in
Flower 1.41): ``FedAvg`` (wrapped by ``DifferentialPrivacyClientSideFixedClipping`` when DP is on),
``DefaultWorkflow`` with ``SecAggPlusWorkflow`` as its fit step. Every round's figures (time, bytes,
banks aggregated, held-out AUC, epsilon so far) go to a progress file as they happen and to one
JSON result file at the end; both paths come from the run config.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from flwr.app import Context, Message
from flwr.common import Metrics, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat
from flwr.proto.node_pb2 import NodeInfo
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg, Strategy
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.run import Run

from common.audit import AuditLog
from common.errors import ProtocolError
from models.hfl.model import TIMING_RECORD, init_weights

MIN_SECAGG_BANKS = 3
"""With two banks each learns the other's update from the sum: refused unless DP is on."""


@dataclass(frozen=True)
class JobSettings:
    """The run config of one horizontal training job (keys as in app/pyproject.toml)."""

    rounds: int = 3
    local_epochs: int = 1
    lr: float = 0.1
    batch_size: int = 64
    l2: float = 0.0
    holdout: float = 0.2
    seed: int = 0
    banks: int = 3
    min_banks: int = 0
    features: int = 0
    secagg: bool = True
    secagg_threshold: float = 0.67
    max_weight: float = 1000.0
    clipping_range: float = 8.0
    stage_timeout: float = 120.0
    dp_noise: float = 0.0
    dp_clip: float = 1.0
    dp_delta: float = 1e-5
    job_id: str = "hfl"
    result_path: str = ""
    progress_path: str = ""
    audit_path: str = ""
    capture_dir: str = ""

    @property
    def dp(self) -> bool:
        return self.dp_noise > 0.0

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any]) -> JobSettings:
        """Read the settings from Flower's run config (dashes in keys, unknown keys ignored)."""
        values: dict[str, Any] = {}
        for name, default in asdict(cls()).items():
            key = name.replace("_", "-")
            if key in run_config:
                raw = run_config[key]
                values[name] = (str(raw).lower() in ("1", "true", "yes")
                                if isinstance(default, bool) and not isinstance(raw, bool)
                                else type(default)(raw))
        return cls(**values)

    def check(self) -> None:
        """Refuse settings that would leak an individual bank's update (see MIN_SECAGG_BANKS)."""
        if self.banks < 2:
            raise ProtocolError(f"horizontal training needs at least two banks, got {self.banks}")
        if self.secagg and self.banks < MIN_SECAGG_BANKS and not self.dp:
            raise ProtocolError(
                f"secure aggregation over {self.banks} banks protects nothing: each bank can "
                "subtract its own update from the sum and read the other's. Use at least "
                f"{MIN_SECAGG_BANKS} banks, or turn differential privacy on (dp-noise > 0)"
            )
        if self.rounds < 1:
            raise ProtocolError(f"rounds must be at least 1, got {self.rounds}")


def epsilon_spent(rounds: int, noise_multiplier: float, delta: float) -> float:
    """(epsilon, delta)-DP of ``rounds`` Gaussian releases with noise ``noise_multiplier`` x clip.

    Each round adds N(0, (z*C)^2) to the sum of bank updates clipped to C (Flower divides both by
    the number of banks): one bank's presence changes the sum by at most C, so a round is a
    Gaussian mechanism of Renyi-DP alpha/(2 z^2). Composition over k rounds and the standard
    conversion minimised over alpha give eps = rho + 2 sqrt(rho ln(1/delta)), rho = k/(2 z^2).
    Bank-level (not row-level) privacy of the released models, without subsampling.
    """
    if rounds <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    rho = rounds / (2.0 * noise_multiplier**2)
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))


class SurvivingSecAggPlusWorkflow(SecAggPlusWorkflow):
    """Flower's SecAgg+ workflow that also completes a round when a bank drops before its keys.

    Flower 1.41 asks for Shamir shares of every sampled node in the unmask stage, so a bank that
    vanishes during set-up or key sharing (whose shares nobody holds, and with whom nobody masked)
    aborts the round. From the masked-vector stage on, only the banks that shared their keys take
    part: exactly the ones the clients masked with. Nothing else changes, and nothing more is
    unmasked.
    """

    def collect_masked_vectors_stage(self, grid: Grid, context: LegacyContext,
                                     state: WorkflowState) -> bool:
        keyed = set(state.active_node_ids)
        state.sampled_node_ids = keyed
        state.nid_to_neighbours = {nid: neighbours & keyed
                                   for nid, neighbours in state.nid_to_neighbours.items()
                                   if nid in keyed}
        return bool(super().collect_masked_vectors_stage(grid, context, state))


# the coordinator's view of the wire ---------------------------------------------------------
@dataclass
class StageLog:
    """One send-and-receive: what stage, how long, what the banks reported computing."""

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


class RecordingGrid(Grid):
    """Flower's Grid with a log of every stage, a default per-stage timeout and test capture.

    Everything recorded is what the coordinator receives anyway: message sizes, timings the banks
    attach, and (capture-dir, tests only) the masked vectors SecAgg+ hands the coordinator.
    """

    def __init__(self, inner: Grid, *, timeout: float | None, capture_dir: str = "") -> None:
        self.inner = inner
        self.timeout = timeout
        self.capture_dir = Path(capture_dir) if capture_dir else None
        self.stages: list[StageLog] = []
        self.on_stage: list[Any] = []

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
            timing = reply.content.config_records.get(TIMING_RECORD)
            if timing is not None:
                log.compute_s = max(log.compute_s, float(cast(float, timing["compute-s"])))
                log.startup_s = max(log.startup_s, float(cast(float, timing["startup-s"])))
            self._capture(log, reply)
        self.stages.append(log)
        for callback in self.on_stage:
            callback("receive", log)
        return replies

    def _capture(self, log: StageLog, reply: Message) -> None:
        if self.capture_dir is None or log.stage != Stage.COLLECT_MASKED_VECTORS:
            return
        configs = reply.content.config_records[RECORD_KEY_CONFIGS]
        from flwr.common import bytes_to_ndarray

        masked = [bytes_to_ndarray(b)
                  for b in cast(list[bytes], configs[Key.MASKED_PARAMETERS])]
        path = self.capture_dir / f"masked-{reply.metadata.src_node_id}-round{log.round}.json"
        path.write_text(json.dumps({"node_id": reply.metadata.src_node_id, "round": log.round,
                                    "masked": [a.tolist() for a in masked]}))


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

    def __init__(self, settings: JobSettings, grid: RecordingGrid, fit: Any) -> None:
        self.settings = settings
        self.grid = grid
        self.fit_workflow = fit
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
        if self.settings.capture_dir or current == self.settings.rounds:
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


# the ServerApp ------------------------------------------------------------------------------
def build_strategy(settings: JobSettings) -> Strategy:
    """FedAvg weighted by rows, initial zeros, AUC averaged by held-out rows; DP when asked."""

    def fit_config(server_round: int) -> dict[str, Scalar]:
        return {"round": server_round, "lr": settings.lr, "local-epochs": settings.local_epochs,
                "batch-size": settings.batch_size, "l2": settings.l2}

    def weighted_auc(results: list[tuple[int, Metrics]]) -> Metrics:
        rows = sum(n for n, _ in results)
        if not rows:
            return {}
        mean = sum(n * float(cast(float, m["auc"])) for n, m in results) / rows
        return {"auc": mean, "rows": rows}

    need = settings.min_banks or settings.banks
    initial = (ndarrays_to_parameters(list(init_weights(settings.features)))
               if settings.features > 0 else None)
    strategy: Strategy = FedAvg(
        fraction_fit=1.0, fraction_evaluate=1.0, min_fit_clients=need,
        min_evaluate_clients=min(need, 2), min_available_clients=need,
        on_fit_config_fn=fit_config, initial_parameters=initial,
        fit_metrics_aggregation_fn=lambda _: {}, evaluate_metrics_aggregation_fn=weighted_auc,
    )
    if settings.dp:
        strategy = DifferentialPrivacyClientSideFixedClipping(
            strategy, noise_multiplier=settings.dp_noise, clipping_norm=settings.dp_clip,
            num_sampled_clients=need,
        )
    return strategy


def run_job(grid: Grid, context: Context) -> dict[str, Any]:
    """Train as the run config says and return the result written to result-path."""
    settings = JobSettings.from_run_config(dict(context.run_config))
    settings.check()
    recording = RecordingGrid(grid, timeout=settings.stage_timeout,
                              capture_dir=settings.capture_dir)
    fit_step: Any
    if settings.secagg:
        fit_step = SurvivingSecAggPlusWorkflow(
            num_shares=1.0, reconstruction_threshold=settings.secagg_threshold,
            max_weight=settings.max_weight, clipping_range=settings.clipping_range,
            timeout=settings.stage_timeout,
        )
    else:
        from flwr.server.workflow.default_workflows import default_fit_workflow

        fit_step = default_fit_workflow
    recorder = Recorder(settings, recording, fit_step)
    recorder.audit("hfl.start", banks=settings.banks, rounds=settings.rounds,
                   secagg=settings.secagg, dp=settings.dp, dp_noise=settings.dp_noise,
                   dp_clip=settings.dp_clip, local_epochs=settings.local_epochs, lr=settings.lr)
    recorder.progress("job-start", rounds=settings.rounds, secagg=settings.secagg)
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=settings.rounds),
                           strategy=build_strategy(settings))
    started = time.perf_counter()
    DefaultWorkflow(fit_workflow=recorder.fit, evaluate_workflow=recorder.evaluate)(
        recording, legacy)
    final = recorder.rounds[-1].weights if recorder.rounds else None
    epsilon = (epsilon_spent(recorder.noisy_rounds, settings.dp_noise, settings.dp_delta)
               if settings.dp else None)
    result = {
        "rounds": [asdict(r) for r in recorder.rounds],
        "auc": next((r.auc for r in reversed(recorder.rounds) if r.auc is not None), None),
        "secagg": settings.secagg,
        "dp": ({"noise_multiplier": settings.dp_noise, "clipping_norm": settings.dp_clip,
                "delta": settings.dp_delta, "epsilon": epsilon,
                "noisy_rounds": recorder.noisy_rounds} if settings.dp else None),
        "banks": settings.banks,
        "seconds": time.perf_counter() - started,
        "final_weights": final,
    }
    recorder.audit("hfl.finish", rounds_completed=sum(r.status == "completed"
                                                      for r in recorder.rounds),
                   auc=result["auc"], epsilon=epsilon,
                   delta=settings.dp_delta if settings.dp else None)
    recorder.progress("job-end", auc=result["auc"])
    return result


def write_json(path: str, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (the orchestrator polls for it)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(payload, f)
    os.replace(tmp, target)


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Flower entry point: run the job, write the result file (or the error) to result-path."""
    result_path = str(context.run_config.get("result-path", ""))
    try:
        result = run_job(grid, context)
    except Exception as err:
        if result_path:
            write_json(result_path, {"error": f"{type(err).__name__}: {err}"})
        raise
    if result_path:
        write_json(result_path, result)

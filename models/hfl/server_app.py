"""The coordinator's Flower ServerApp: FedAvg over banks with SecAgg+ and optional central DP.

Runs inside Flower's ``@app.main()`` with the legacy strategy API (the only one SecAgg+ supports in
Flower 1.41): ``FedAvg`` (wrapped by ``DifferentialPrivacyClientSideFixedClipping`` when DP is on),
``DefaultWorkflow`` with ``SecAggPlusWorkflow`` as its fit step. Every round's figures (time, bytes,
banks aggregated, held-out AUC, epsilon so far) go to a progress file as they happen and to one
JSON result file at the end; both paths come from the run config. Settings are in settings.py,
the recording of stages and rounds in recording.py.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

from flwr.app import Context
from flwr.common import Metrics, Scalar, ndarrays_to_parameters
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg, Strategy
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
from flwr.serverapp import Grid, ServerApp

from models.hfl.model import init_weights
from models.hfl.recording import Recorder, RecordingGrid, ReplyObserver
from models.hfl.settings import JobSettings, epsilon_spent


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


def run_job(grid: Grid, context: Context, *, observers: Sequence[ReplyObserver] = (),
            keep_weights: bool = False) -> dict[str, Any]:
    """Train as the run config says and return the result written to result-path.

    ``observers`` see every reply and ``keep_weights`` keeps every round's aggregate in the
    result: extension points for the local federation's tools, unused by the coordinator.
    """
    settings = JobSettings.from_run_config(dict(context.run_config))
    settings.check()
    recording = RecordingGrid(grid, timeout=settings.stage_timeout, observers=observers)
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
    recorder = Recorder(settings, recording, fit_step, keep_weights=keep_weights)
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


def run_and_report(context: Context, job: Callable[[], dict[str, Any]]) -> None:
    """Run ``job``; write its result (or its error) to the run config's result-path."""
    result_path = str(context.run_config.get("result-path", ""))
    try:
        result = job()
    except Exception as err:
        if result_path:
            write_json(result_path, {"error": f"{type(err).__name__}: {err}"})
        raise
    if result_path:
        write_json(result_path, result)


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Flower entry point: run the job, write the result file (or the error) to result-path."""
    run_and_report(context, lambda: run_job(grid, context))

"""The local federation's ServerApp: the coordinator's production one plus timing and test capture.

`Federation` submits this in place of models.hfl.server_app's app (see federation.SERVER_APP). It
runs the same job and adds two reply observers: `read_timing` (the seconds each bank's ClientApp
reports computing and starting, for the benchmark's per-round costs) and `MaskedCapture` (tests
only: with ``capture-dir`` in the run config, each masked vector SecAgg+ hands the coordinator is
written to that folder, and every round's aggregate is kept in the result, so a test can compare
them with the banks' plaintext updates). Neither is in the ServerApp the coordinator runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

from flwr.app import Context, Message
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.serverapp import Grid, ServerApp

from fedcredit.hfl.client_app import TIMING_RECORD
from models.hfl.recording import ReplyObserver, StageLog
from models.hfl.server_app import run_and_report, run_job

CAPTURE_KEY = "capture-dir"
"""Run-config key of the capture folder; the federation adds it to the submitted app's config."""


def read_timing(log: StageLog, reply: Message) -> None:
    """Keep the slowest bank's compute and start-up seconds of the stage (timing_mod's record)."""
    timing = reply.content.config_records.get(TIMING_RECORD)
    if timing is not None:
        log.compute_s = max(log.compute_s, float(cast(float, timing["compute-s"])))
        log.startup_s = max(log.startup_s, float(cast(float, timing["startup-s"])))


class MaskedCapture:
    """Tests only: write each masked vector the coordinator receives to ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self, log: StageLog, reply: Message) -> None:
        if log.stage != Stage.COLLECT_MASKED_VECTORS:
            return
        configs = reply.content.config_records[RECORD_KEY_CONFIGS]
        masked = [bytes_to_ndarray(b) for b in cast(list[bytes], configs[Key.MASKED_PARAMETERS])]
        node = reply.metadata.src_node_id
        path = self.folder / f"masked-{node}-round{log.round}.json"
        path.write_text(json.dumps({"node_id": node, "round": log.round,
                                    "masked": [a.tolist() for a in masked]}))


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Flower entry point: the production job with timing, and capture when capture-dir is set."""
    capture_dir = str(context.run_config.get(CAPTURE_KEY, ""))
    observers: list[ReplyObserver] = [read_timing]
    if capture_dir:
        observers.append(MaskedCapture(Path(capture_dir)))
    run_and_report(context, lambda: run_job(grid, context, observers=observers,
                                            keep_weights=bool(capture_dir)))

"""The local federation's ClientApp: the bank's production one plus timing and test capture.

`Federation` runs this in place of node.hfl_client's app (see federation.CLIENT_APP). Around the
bank's own mods it adds `timing_mod` (seconds computing and starting the ClientApp, for the
benchmark's per-round costs) and `capture_mod` (tests only: with ``capture-dir`` in the node
config, each bank's plaintext update is written to that folder so a test can compare it with
what crossed the wire). Neither is in the ClientApp a real bank runs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message
from flwr.app.message_type import MessageType
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat

from node.hfl_client import client_fn, dp_clip_mod, secagg_policy_mod, unmask_guard_mod

TIMING_RECORD = "fedcredit.timing"
"""Reply record with the seconds a bank spent computing and starting its ClientApp."""
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def timing_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Add the seconds spent computing (and starting this ClientApp process) to the reply."""
    started = time.time()
    out = call_next(msg, ctxt)
    if not out.has_error():
        out.content.config_records[TIMING_RECORD] = ConfigRecord({
            "compute-s": time.time() - started,
            "startup-s": max(0.0, started - _process_start_time()),
        })
    return out


def capture_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Tests only (node config capture-dir): keep the bank's plaintext update in its own folder."""
    out = call_next(msg, ctxt)
    folder = ctxt.node_config.get("capture-dir")
    if folder and msg.metadata.message_type == MessageType.TRAIN and not out.has_error():
        fitres = compat.recorddict_to_fitres(out.content, keep_input=True)
        arrays = parameters_to_ndarrays(fitres.parameters)
        record = {"node_id": msg.metadata.dst_node_id, "round": msg.metadata.group_id,
                  "num_examples": fitres.num_examples, "weights": [a.tolist() for a in arrays]}
        bank = str(ctxt.node_config.get("bank", msg.metadata.dst_node_id))
        path = Path(str(folder)) / f"{bank}-round{msg.metadata.group_id}.json"
        path.write_text(json.dumps(record))
    return out


def _process_start_time() -> float:
    """Wall-clock time this process started (Linux /proc), to measure ClientApp start-up."""
    try:
        fields = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return boot + ticks / _CLK_TCK
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


app = ClientApp(
    client_fn=client_fn,
    mods=[timing_mod, unmask_guard_mod, secagg_policy_mod, capture_mod, dp_clip_mod],
)

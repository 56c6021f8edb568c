"""`fedcredit demo`: certificates, data, five processes, alignment, training, scoring, the
credit lifecycle (admission, portfolio, a data change, early warning), reports."""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.table import Table

from fedcredit.demo.lifecycle import run_lifecycle
from fedcredit.demo.model_report import report_vertical_lr
from fedcredit.demo.parties import LABEL_PARTY, party_specs
from fedcredit.demo.scorecard import train_scorecard
from fedcredit.demo.sections import (
    score_sample,
    train_horizontal,
    train_secureboost,
    train_vertical_lr,
)
from fedcredit.launcher import LocalNetwork
from fedcredit.synth import synthesize
from proto.fedcredit.v1 import coordinator_pb2, node_pb2


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_demo(report_path: Path, *, enterprises: int = 20000, seed: int = 7,
             workdir: Path | None = None, console: Console | None = None, banks: int = 0,
             hfl_rounds: int = 3) -> dict[str, Any]:
    """Mint certificates, synthesize data, start five processes, align, report, stop them all."""
    console = console or Console(emoji=False)
    start = time.perf_counter()
    temporary = workdir is None
    root = Path(tempfile.mkdtemp(prefix="fedcredit-demo-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    report: dict[str, Any] = {}
    report_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with console.status("synthesizing the supply chain"):
            synth = synthesize(root / "data", enterprises=enterprises, seed=seed)
        console.print(f"[bold]data[/]: {enterprises:,} SMEs in {len(synth.parties)} party files")
        specs = party_specs(synth)
        with LocalNetwork(root, specs) as net:
            with console.status("starting coordinator and nodes (mutual TLS)"):
                net.start(progress=lambda name: console.print(f"  node [cyan]{name}[/] serving"))
            stub = net.stub()
            nodes = stub.ListNodes(coordinator_pb2.ListNodesRequest(), timeout=30).nodes
            report["parties"] = [
                {"name": n.party, "role": "label" if n.role == 1 else "feature", "rows": n.rows}
                for n in nodes]
            with console.status("aligning customers by ECDH-PSI"):
                aligned = stub.Align(coordinator_pb2.AlignRequest(
                    label_party=LABEL_PARTY, mode=node_pb2.PSI_MODE_FULL,
                    job_id=f"demo-{seed}-{enterprises}"), timeout=1800)
            report["alignment"] = {p.party: p.intersection_size for p in aligned.pairs}
            _print_alignment(console, aligned)
            report["vertical_lr"] = train_vertical_lr(net, stub, synth, aligned.job_id, console)
            report["scoring"] = score_sample(net, console)
            report["vertical_lr"].update(report_vertical_lr(
                net, synth, report["vertical_lr"]["model_id"], report_path, console))
            report["secureboost"] = train_secureboost(net, stub, aligned.job_id, console)
            # the scorecard first: the lifecycle's data change ends the story, and a model
            # trained after it would learn from the deteriorated snapshot
            report["scorecard"] = train_scorecard(net, stub, synth, aligned.job_id, report_path,
                                                  console)
            report["lifecycle"] = run_lifecycle(net, synth, console, seed=seed,
                                                model_id=report["vertical_lr"]["model_id"])
        if banks:
            report["horizontal"] = train_horizontal(root, enterprises, seed, banks, hfl_rounds,
                                                    console)
        report["seconds"] = round(time.perf_counter() - start, 2)
        report_path.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"[green]demo done[/] in {report['seconds']}s; report: {report_path}")
        return report
    finally:
        signal.signal(signal.SIGTERM, previous)
        if temporary:
            shutil.rmtree(root, ignore_errors=True)


def _print_alignment(console: Console, aligned: coordinator_pb2.AlignResponse) -> None:
    table = Table(title=f"alignment ({aligned.job_id}, {aligned.seconds:.1f}s)")
    for column in ("feature node", "bank rows", "its rows", "intersection"):
        table.add_column(column)
    for p in aligned.pairs:
        table.add_row(p.party, f"{p.label_rows:,}", f"{p.party_rows:,}",
                      f"{p.intersection_size:,}")
    console.print(table)

"""`fedcredit demo`: the whole network on one machine, end to end, with a JSON report."""

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

from fedcredit.network import LocalNetwork, PartySpec
from fedcredit.synth import SynthResult, synthesize
from proto.fedcredit.v1 import coordinator_pb2, node_pb2

LABEL_PARTY = "bank"
FEATURE_PARTIES = ("core", "logistics", "tax")


def party_specs(synth: SynthResult) -> list[PartySpec]:
    """Node specs for the bank (label) and the three feature holders of a synthetic chain."""
    specs = []
    for name in (LABEL_PARTY, *FEATURE_PARTIES):
        part = synth.parties[name]
        data: dict[str, Any] = {"source": "csv", "path": str(Path(part.path).resolve()),
                                "id_column": part.id_column, "id_format": "uscc",
                                "features": list(part.feature_columns)}
        if part.label_column:
            data["label_column"] = part.label_column
        specs.append(PartySpec(name=name, role="label" if name == LABEL_PARTY else "feature",
                               data=data))
    return specs


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_demo(report_path: Path, *, enterprises: int = 20000, seed: int = 7,
             workdir: Path | None = None, console: Console | None = None) -> dict[str, Any]:
    """Mint certificates, synthesize data, start five processes, align, report, stop them all."""
    console = console or Console()
    start = time.perf_counter()
    temporary = workdir is None
    root = Path(tempfile.mkdtemp(prefix="fedcredit-demo-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    report: dict[str, Any] = {}
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
                    job_id=f"demo-{seed}"), timeout=1800)
            report["alignment"] = {p.party: p.intersection_size for p in aligned.pairs}
            _print_alignment(console, aligned)
        report["seconds"] = round(time.perf_counter() - start, 2)
        report_path.parent.mkdir(parents=True, exist_ok=True)
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

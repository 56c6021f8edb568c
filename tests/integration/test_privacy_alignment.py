"""What crosses the wire during alignment, and what the coordinator stores: never a raw id."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedcredit.launcher import LocalNetwork
from proto.fedcredit.v1 import coordinator_pb2, node_pb2
from tests.integration.conftest import Tables, make_tables, tapped_network
from tests.integration.wiretap import WireTap


@pytest.fixture(scope="module")
def tapped(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalNetwork, WireTap, Tables]]:
    """A real coordinator in this process with a tap on every call in and out; real nodes."""
    tables = make_tables(tmp_path_factory.mktemp("data"), seed=11)
    with tapped_network(tmp_path_factory.mktemp("net"), tables.specs) as (net, tap):
        net.stub().Align(coordinator_pb2.AlignRequest(
            label_party="bank", mode=node_pb2.PSI_MODE_FULL, job_id="tap-job"), timeout=300)
        yield net, tap, tables


def _all_ids(tables: Tables) -> set[str]:
    return {i for ids in tables.ids.values() for i in ids}


def test_tap_saw_the_whole_protocol(tapped: tuple[LocalNetwork, WireTap, Tables]) -> None:
    _, tap, _ = tapped
    methods = tap.methods()
    for step in ("PsiBlindOwn", "PsiDoubleBlind", "PsiIntersect", "PsiAccept", "RegisterNode"):
        assert any(m.endswith(step) for m in methods), step
    assert len(tap.blob()) > 32 * 700  # the blinded points of every party did cross


def test_no_raw_id_crosses_the_wire(tapped: tuple[LocalNetwork, WireTap, Tables]) -> None:
    _, tap, tables = tapped
    blob = tap.blob()
    leaked = [i for i in _all_ids(tables) if i.encode() in blob]
    assert not leaked, f"{len(leaked)} raw ids on the wire, e.g. {leaked[:3]}"
    # Not even a recognisable part of one: the organisation-code part of each id.
    assert not [i for i in _all_ids(tables) if i[8:17].encode() in blob]


def test_coordinator_store_and_audit_hold_no_id(
        tapped: tuple[LocalNetwork, WireTap, Tables]) -> None:
    net, _, tables = tapped
    state = net.workdir / "state" / "coordinator"
    stored = b""
    with sqlite3.connect(state / "coordinator.sqlite") as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            for row in db.execute(f"SELECT * FROM {table}"):  # noqa: S608 - our own table names
                stored += b"|".join(v if isinstance(v, bytes) else str(v).encode() for v in row)
    stored += (state / "audit.jsonl").read_bytes()
    assert b"tap-job" in stored  # the job is there...
    assert not [i for i in _all_ids(tables) if i.encode() in stored]  # ...no id is


def test_node_logs_hold_no_id(tapped: tuple[LocalNetwork, WireTap, Tables]) -> None:
    net, _, tables = tapped
    logs = b"".join(p.read_bytes() for p in Path(net.workdir / "logs").glob("*.log"))
    assert b"intersection" in logs
    assert not [i for i in _all_ids(tables) if i.encode() in logs]

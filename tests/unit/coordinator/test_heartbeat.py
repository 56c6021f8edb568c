"""A node's repeated registration (its heartbeat) is a no-op for a coordinator that knows it."""

from __future__ import annotations

from pathlib import Path

from coordinator.config import CoordinatorConfig
from coordinator.service import Coordinator
from proto.fedcredit.v1 import common_pb2, coordinator_pb2


def _registration(endpoint: str = "127.0.0.1:1") -> coordinator_pb2.RegisterNodeRequest:
    key = common_pb2.PeerKey(party="bank", sealing_public_key=bytes(32))
    info = common_pb2.NodeInfo(party="bank", role=common_pb2.ROLE_LABEL, rows=10, key=key)
    return coordinator_pb2.RegisterNodeRequest(endpoint=endpoint, info=info)


def _audit_lines(state: Path) -> int:
    return len((state / "audit.jsonl").read_text().splitlines())


def test_an_unchanged_registration_keeps_its_time_and_writes_nothing(tmp_path: Path) -> None:
    core = Coordinator(CoordinatorConfig(state_dir=tmp_path), insecure=True)
    try:
        first = core.register(_registration(), caller=None)
        lines = _audit_lines(tmp_path)
        core.store.upsert_node(core.store.nodes()[0])  # same record
        again = core.register(_registration(), caller=None)

        assert again.registered_at_unix == first.registered_at_unix
        assert _audit_lines(tmp_path) == lines
    finally:
        core.close()


def test_a_changed_endpoint_or_a_lost_record_registers_anew(tmp_path: Path) -> None:
    core = Coordinator(CoordinatorConfig(state_dir=tmp_path / "old"), insecure=True)
    try:
        core.register(_registration(), caller=None)
        lines = _audit_lines(tmp_path / "old")
        core.register(_registration("127.0.0.1:2"), caller=None)

        assert core.store.node("bank") is not None
        assert core.store.node("bank").endpoint == "127.0.0.1:2"  # type: ignore[union-attr]
        assert _audit_lines(tmp_path / "old") == lines + 1
    finally:
        core.close()
    fresh = Coordinator(CoordinatorConfig(state_dir=tmp_path / "new"), insecure=True)
    try:
        assert fresh.store.node("bank") is None
        fresh.register(_registration("127.0.0.1:2"), caller=None)
        assert fresh.store.node("bank") is not None
    finally:
        fresh.close()

"""Roles the operator declares in `[parties]`: a node registering in another role is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import DataValidationError, TrustError
from coordinator.config import CoordinatorConfig, load_coordinator_config
from coordinator.service import Coordinator
from proto.fedcredit.v1 import common_pb2, coordinator_pb2


def _registration(party: str, role: int) -> coordinator_pb2.RegisterNodeRequest:
    key = common_pb2.PeerKey(party=party, sealing_public_key=bytes(32))
    info = common_pb2.NodeInfo(party=party, role=role, rows=10, key=key)
    return coordinator_pb2.RegisterNodeRequest(endpoint="127.0.0.1:1", info=info)


def test_a_node_in_an_undeclared_role_is_refused_naming_both(tmp_path: Path) -> None:
    config = CoordinatorConfig(state_dir=tmp_path, parties={"bank": "label", "core": "feature"})
    core = Coordinator(config, insecure=True)
    try:
        core.register(_registration("bank", common_pb2.ROLE_LABEL), None)
        with pytest.raises(TrustError, match="'core' registered with role 'label', but the "
                                             "operator declared it 'feature'"):
            core.register(_registration("core", common_pb2.ROLE_LABEL), None)
        assert [n.party for n in core.store.nodes()] == ["bank"]
        assert any(e.event == "node.refused" for e in _entries(tmp_path))
    finally:
        core.close()


def test_the_list_form_still_reads_as_any_role(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.toml"
    path.write_text('state_dir = "state"\nparties = ["bank", "core"]\n')
    config = load_coordinator_config(path)
    assert config.parties == {"bank": "any", "core": "any"}
    core = Coordinator(config, insecure=True)
    try:
        core.register(_registration("core", common_pb2.ROLE_LABEL), None)  # any role
    finally:
        core.close()


def test_the_table_form_and_a_bad_role_are_named(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.toml"
    path.write_text('state_dir = "state"\n[parties]\nbank = "label"\ncore = "features"\n')
    with pytest.raises(DataValidationError, match=r"parties\.core"):
        load_coordinator_config(path)


def _entries(folder: Path) -> list:  # type: ignore[type-arg]
    from common.audit import read_audit_log

    return list(read_audit_log(folder / "audit.jsonl"))

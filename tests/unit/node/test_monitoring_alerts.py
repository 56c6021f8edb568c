"""A feature node's data-alert handler without a server: levels against its reference, encrypted
under the bank's key, 0 for what it does not hold, the PSI of its own rows, the scoring caps."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from common.errors import ProtocolError
from crypto.he import scoring as score_he
from crypto.he import unpack_frames
from models.vlr.scoring import PartyModel
from node.config import NodeConfig
from node.datasource import NodeTable
from node.monitoring.alerts import DataAlerts
from node.state import NodeState
from proto.fedcredit.v1 import node_pb2
from tests.unit.node.test_scoring_feature import IDS, JOB, Bank, Scoring


@pytest.fixture()
def node(tmp_path: Path) -> NodeState:
    config = NodeConfig(party="core", role="feature", coordinator="127.0.0.1:1",
                        tls={"ca": "ca", "cert": "c", "key": "k"}, state_dir=tmp_path / "core",
                        data={"source": "csv", "path": "core.csv"},
                        monitoring={"limits": [{"column": "a", "yellow": 0.2, "orange": 0.4,
                                                "red": 0.6}]})
    table = NodeTable(ids=IDS[:8], features=["a", "b"], X=np.column_stack(
        [np.full(8, 100.0), np.arange(8.0)]), y=None, source="test")
    state = NodeState(config, table, insecure=True)
    model = PartyModel(party="core", role="feature", job=JOB, features=("a", "b"),
                       weights=np.array([0.5, -1.25, 0.3]), mean=np.zeros(2), scale=np.ones(2))
    folder = state.state_dir / "models" / JOB
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(model.to_json())
    return state


def _levels(bank: Bank, replies: list[node_pb2.DataAlertPartialReply], n: int) -> np.ndarray:
    blob = b"".join(r.levels for r in replies)
    levels, covered = score_he.decrypt_sums(bank.context, unpack_frames(blob), n)
    assert not covered.any()  # no coverage travels with data alerts
    return np.rint(levels)


def test_levels_follow_the_nodes_own_limits_and_nothing_held_is_zero(node: NodeState) -> None:
    bank, scoring = Bank(), Scoring(node)
    alerts = DataAlerts(scoring)
    scoring.setup(bank.setup(node))  # keeps the reference (no training snapshot here)
    table = node.table
    X = table.X.copy()
    X[[1, 2, 3], 0] = [85.0, 55.0, 30.0]  # orders fell 15 %, 45 %, 70 %
    node.live.loader = lambda cfg, role: replace(table, X=X)
    assert node.live.reload(force=True).outcome == "loaded"
    asked = [IDS[0], IDS[1], IDS[2], IDS[3], IDS[10]]  # IDS[10] is not held here
    replies = list(alerts.partial(bank.request(asked, node=node)))
    kinds = [r.WhichOneof("body") for r in replies]
    assert kinds[:2] == ["snapshot", "reference"] and "refused_budget" not in kinds
    assert replies[1].reference.decode() != replies[0].snapshot.decode()
    assert _levels(bank, replies, len(asked)).tolist() == [0, 0, 2, 3, 0]
    psi = {r.stability.feature: (r.stability.psi, r.stability.band) for r in replies
           if r.WhichOneof("body") == "stability"}
    assert set(psi) == {"a", "b"} and psi["b"] == (0.0, "stable")
    assert psi["a"][1] == "shifted"
    audit = (node.state_dir / "audit.jsonl").read_text()
    assert '"data_alerts"' in audit.replace('": "', '":"') or "data_alerts" in audit


def test_the_caps_apply_and_a_model_request_is_refused(node: NodeState) -> None:
    bank, scoring = Bank(), Scoring(node)
    alerts = DataAlerts(scoring)
    scoring.setup(bank.setup(node))
    with pytest.raises(ProtocolError, match="consent"):
        list(alerts.partial(bank.request([IDS[0]], consent=" ", node=node)))

    def with_model_request() -> object:
        messages = list(bank.request([IDS[0]], node=node))
        messages[0].header.model_request_bytes = 10
        return iter(messages)

    with pytest.raises(ProtocolError, match="model request"):
        list(alerts.partial(with_model_request()))  # type: ignore[arg-type]
    for _ in range(scoring.caps.daily_budget):
        list(alerts.partial(bank.request([IDS[1]], node=node)))
    replies = list(alerts.partial(bank.request([IDS[1]], node=node)))
    assert any(r.WhichOneof("body") == "refused_budget" for r in replies)
    assert _levels(bank, replies, 1).tolist() == [0]

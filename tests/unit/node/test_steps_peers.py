"""Parts between feature nodes (`To.PEERS`) through the nodes' step handlers: keys and sealing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.errors import ProtocolError
from common.parts import Payload, from_parts, to_parts
from coordinator.steps import NodeNetwork
from models.protocol import JobSpec
from models.registry import algorithm
from node.alignment import FeatureAlignment
from node.config import NodeConfig
from node.datasource import NodeTable
from node.state import NodeState
from node.steps import StepHandler
from proto.fedcredit.v1 import common_pb2

ROWS, ALIGN = 600, "align-1"
BINNING = algorithm("binning")
SETTINGS = {"method": "quantile", "bins": 4, "min_bin_rows": 32, "min_iv": 0.0,
            "max_correlation": 0.5, "max_vif": 4.0}


class Node:
    def __init__(self, root: Path, party: str, table: NodeTable, *, share: bool = True) -> None:
        role = "label" if table.y is not None else "feature"
        config = NodeConfig(party=party, role=role, coordinator="127.0.0.1:1",
                            floors={"min_bin_rows": 32, "share_correlations": share},
                            tls={"ca": "ca", "cert": "c", "key": "k"}, state_dir=root / party,
                            data={"source": "csv", "path": f"{party}.csv",
                                  **({"label_column": "y"} if role == "label" else {})})
        self.state = NodeState(config, table, insecure=True)
        self.handler = StepHandler(self.state)
        self.party = party

    @property
    def peer_key(self) -> common_pb2.PeerKey:
        key = self.state.peer_key
        return common_pb2.PeerKey(party=key.party, sealing_public_key=key.sealing_pk)


def _nodes(root: Path, share: bool = True) -> tuple[Node, list[Node]]:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(ROWS, 4))
    y = (rng.random(ROWS) < 1 / (1 + np.exp(-(x @ [1.0, -0.8, 0.6, 0.5])))).astype(np.int8)
    ids = [f"id-{k}" for k in range(ROWS)]
    bank = Node(root, "bank", NodeTable(ids=ids, features=["b0"], X=x[:, :1], y=y,
                                        source="bank"))
    copy = x[:, 1] + 0.1 * rng.normal(size=ROWS)  # tax holds a noisy copy of core's c0
    core = Node(root, "core", NodeTable(ids=ids, features=["c0", "c1"], X=x[:, 1:3], y=None,
                                        source="core"), share=share)
    tax = Node(root, "tax", NodeTable(ids=ids, features=["t0", "t1"],
                                      X=np.column_stack([x[:, 3], copy]), y=None, source="tax"))
    bank.state.alignments.save_fingerprint(ALIGN, ids)
    order = bank.state.alignments.job_order(ALIGN, ROWS)
    for node in (core, tax):
        node.state.alignments.save_fingerprint(ALIGN, ids)
        node.state.alignments.save_feature(ALIGN, FeatureAlignment(
            n_rows=ROWS, positions=np.argsort(order), own_rows=np.arange(ROWS)))
    return bank, [core, tax]


def _network(bank: Node, features: list[Node], tapped: list[Payload],
             kind: type[NodeNetwork] = NodeNetwork, settings: dict[str, Any] = SETTINGS,
             headers: list[tuple[str, common_pb2.StepHeader]] | None = None) -> NodeNetwork:
    handlers = {n.party: n.handler for n in (bank, *features)}

    def send(party: str, header: common_pb2.StepHeader,
             payloads: Sequence[Payload]) -> dict[str, Payload]:
        tapped.extend(payloads)
        if headers is not None:
            headers.append((party, header))
        inputs = from_parts(to_parts(payloads))
        return from_parts(to_parts(handlers[party].run(header, inputs)))

    spec = JobSpec(label="bank", features=[f.party for f in features], align_job=ALIGN,
                   settings=settings)
    return kind(BINNING, "bin-1", spec, bank, features, send)


def test_feature_nodes_seal_their_columns_to_each_other_and_the_bank_selects(
        tmp_path: Path) -> None:
    bank, features = _nodes(tmp_path)
    tapped: list[Payload] = []
    settings = BINNING.settings.model_validate(SETTINGS)
    progress = list(BINNING.drive(_network(bank, features, tapped), settings))
    report = progress[-1].report
    [columns] = [p for p in tapped if p.name.startswith("columns:")]
    assert (columns.name, columns.sender, columns.recipient) == ("columns:core>tax", "core",
                                                                 "tax")
    assert columns.sealed
    assert all(p.sealed for p in tapped if p.name.split(":")[0] in BINNING.node_to_node())
    rows = {f"{r['party']}:{r['name']}": r for r in report["iv_table"]}
    dropped = [k for k in ("core:c0", "tax:t1") if not rows[k]["selected"]]
    assert len(dropped) == 1 and rows[dropped[0]]["reason"].startswith("correlated with")
    summary = json.loads((bank.state.state_dir / "models" / "bin-1" / "binning.json").read_text())
    assert {c["name"] for c in summary["characteristics"]} == {"b0", "c0", "c1", "t0", "t1"}
    assert all("vif" in r for r in report["iv_table"] if r["selected"])


def test_only_algorithms_with_peer_parts_hand_feature_nodes_each_others_keys(
        tmp_path: Path) -> None:
    bank, features = _nodes(tmp_path)
    net = _network(bank, features, [])
    opened = net._header(BINNING.step("open", "feature"), 0, 0, {}, "tax")
    assert [p.party for p in opened.peers] == ["bank", "core"]
    spec = net.spec.model_copy(update={"settings": {}})  # vlr's defaults
    vlr = NodeNetwork(algorithm("vlr"), "j", spec, bank, features, net.send)
    assert [p.party for p in vlr._header(vlr.algorithm.step("open", "feature"), 0, 0, {},
                                         "tax").peers] == ["bank"]


def test_a_binning_job_without_correlations_runs_with_no_feature_node_holding_anothers_key(
        tmp_path: Path) -> None:
    bank, features = _nodes(tmp_path)
    tapped: list[Payload] = []
    headers: list[tuple[str, common_pb2.StepHeader]] = []
    plain = {**SETTINGS, "max_correlation": None, "max_vif": None}
    net = _network(bank, features, tapped, settings=plain, headers=headers)
    progress = list(BINNING.drive(net, BINNING.settings.model_validate(plain)))
    rows = {f"{r['party']}:{r['name']}" for r in progress[-1].report["iv_table"]}
    assert rows == {"bank:b0", "core:c0", "core:c1", "tax:t0", "tax:t1"}
    opened = {party: [p.party for p in h.peers] for party, h in headers if h.step == "open"}
    assert opened == {"bank": ["core", "tax"], "core": ["bank"], "tax": ["bank"]}
    for node in features:  # what each feature node holds: the bank's key only
        assert set(node.handler.jobs["bin-1"].sealers) == {"bank"}
    assert not [p for p in tapped if ">" in p.name]  # no part between feature nodes
    assert {h.step for _, h in headers} == {"open", "labels", "prebins", "merge", "finish",
                                            "select"}  # no cross step


def test_a_node_that_does_not_share_its_matrix_refuses_a_vif_job(tmp_path: Path) -> None:
    bank, features = _nodes(tmp_path, share=False)
    settings = BINNING.settings.model_validate(SETTINGS)
    with pytest.raises(ProtocolError, match="share_correlations = false"):
        list(BINNING.drive(_network(bank, features, []), settings))
    audit = (features[0].state.state_dir / "audit.jsonl").read_text()
    assert '"train.refused"' in audit and "max_vif" in audit


class _Withholding(NodeNetwork):
    """A relay that hands feature nodes only the bank's key (as for any other algorithm)."""

    def _header(self, step: Any, epoch: int, batch: int, extra: Any,
                party: str) -> common_pb2.StepHeader:
        header = super()._header(step, epoch, batch, extra, party)
        if step.role == "feature":
            kept = [p for p in header.peers if p.party == "bank"]
            del header.peers[:]
            header.peers.extend(kept)
        return header


def test_a_node_without_the_recipients_key_names_the_part_and_the_recipient(
        tmp_path: Path) -> None:
    bank, features = _nodes(tmp_path)
    settings = BINNING.settings.model_validate(SETTINGS)
    with pytest.raises(ProtocolError, match="'columns:core>tax' goes to 'tax', whose sealing key "
                                            "this node was not given when job bin-1 opened"):
        list(BINNING.drive(_network(bank, features, [], _Withholding), settings))

"""The node's generic step handler without a server: a whole declared job, and what it refuses."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from common.errors import DataValidationError, ProtocolError
from common.parts import Payload, from_parts, to_parts
from coordinator.steps import NodeNetwork
from models.protocol import JobSpec
from models.registry import algorithm
from models.vlr.algorithm import drive
from models.vlr.arbiter import Arbiter
from node.alignment import FeatureAlignment
from node.config import NodeConfig
from node.datasource import NodeTable
from node.job_record import load_job_record
from node.state import NodeState
from node.steps import StepHandler
from proto.fedcredit.v1 import common_pb2

ROWS, ALIGN = 240, "align-1"
VLR = algorithm("vlr")
SETTINGS = {"learning_rate": 0.5, "batch_size": 80, "min_batch": 40, "max_epochs": 3,
            "validation_fraction": 0.25, "seed": 3}


class Node:
    """A node's state and handler, as its server would hold them."""

    def __init__(self, root: Path, party: str, role: str, table: NodeTable,
                 min_batch: int = 64) -> None:
        config = NodeConfig(party=party, role=role, coordinator="127.0.0.1:1",
                            floors={"min_batch": min_batch},
                            tls={"ca": "ca", "cert": "c", "key": "k"}, state_dir=root / party,
                            data={"source": "csv", "path": f"{party}.csv",
                                  **({"label_column": "y"} if role == "label" else {})})
        self.state = NodeState(config, table, insecure=True)
        self.handler = StepHandler(self.state)

    @property
    def party(self) -> str:
        return self.state.party

    @property
    def peer_key(self) -> common_pb2.PeerKey:
        key = self.state.peer_key
        return common_pb2.PeerKey(party=key.party, sealing_public_key=key.sealing_pk)


def _nodes(root: Path, *, feature_min_batch: int = 32) -> tuple[Node, Node]:
    rng = np.random.default_rng(5)
    x_bank, x_core = rng.normal(size=(ROWS, 2)), rng.normal(size=(ROWS, 3))
    logit = x_bank @ [0.8, -0.5] + x_core @ [1.2, 0.0, -0.9]
    y = (rng.random(ROWS) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    ids = [f"id-{k}" for k in range(ROWS)]
    bank = Node(root, "bank", "label",
                NodeTable(ids=ids, features=["b0", "b1"], X=x_bank, y=y, source="bank"), 32)
    core = Node(root, "core", "feature",
                NodeTable(ids=ids, features=["c0", "c1", "c2"], X=x_core, y=None, source="core"),
                feature_min_batch)
    bank.state.alignments.save_fingerprint(ALIGN, ids)
    order = bank.state.alignments.job_order(ALIGN, ROWS)  # the same entities, row for row
    core.state.alignments.save_fingerprint(ALIGN, ids)
    core.state.alignments.save_feature(ALIGN, FeatureAlignment(
        n_rows=ROWS, positions=np.argsort(order), own_rows=np.arange(ROWS)))
    return bank, core


def _network(job: str, bank: Node, core: Node, settings: dict[str, object]) -> NodeNetwork:
    handlers = {n.party: n.handler for n in (bank, core)}

    def send(party: str, header: common_pb2.StepHeader,
             payloads: Sequence[Payload]) -> dict[str, Payload]:
        inputs = from_parts(to_parts(payloads))  # the wire's own framing
        return from_parts(to_parts(handlers[party].run(header, inputs)))

    spec = JobSpec(label="bank", features=["core"], align_job=ALIGN, settings=settings)
    return NodeNetwork(VLR, job, spec, bank, [core], send)


def _arbiter(job: str) -> Arbiter:
    return Arbiter(job)  # real CKKS: the nodes build production roles


def test_a_declared_job_runs_through_the_handlers_and_leaves_models_and_checkpoints(
        tmp_path: Path) -> None:
    bank, core = _nodes(tmp_path)
    settings = VLR.settings.model_validate(SETTINGS)
    net = _network("job-1", bank, core, SETTINGS)
    progress = list(drive(net, settings, arbiter=_arbiter("job-1")))
    reports = [p.report for p in progress if p.kind == "epoch"]
    assert [r["epoch"] for r in reports] == [0, 1, 2]
    assert progress[-1].kind == "final" and progress[-1].report["auc"] > 0.7
    core_model = (core.state.state_dir / "models" / "job-1" / "model.json").read_text()
    assert '"features": ["c0", "c1", "c2"]' in core_model
    checkpoint = bank.state.state_dir / "jobs" / "job-1" / "checkpoint.npz"
    assert zipfile.is_zipfile(checkpoint)  # versioned .npz, not a pickle
    record = load_job_record(bank.state.state_dir, "job-1")  # what the bank's report reads
    assert (record.algorithm, record.label, record.features, record.align_job) == (
        "vlr", "bank", ["core"], ALIGN)
    assert record.settings["validation_fraction"] == 0.25 and record.settings["seed"] == 3


def test_a_resumed_job_continues_from_the_checkpoint(tmp_path: Path) -> None:
    bank, core = _nodes(tmp_path)
    settings = VLR.settings.model_validate(SETTINGS)
    network = _network("job-2", bank, core, SETTINGS)
    first = drive(network, settings)
    assert [p.kind for p in (next(first), next(first))] == ["setup", "epoch"]
    first.close()  # the coordinator went away after epoch 0
    bank, core = _nodes(tmp_path)  # restarted nodes: new state objects, same folders
    again = _network("job-2", bank, core, SETTINGS)
    again.vault = network.vault  # the coordinator's vault outlives its process
    resumed = drive(again, settings, resume=True)
    setup = next(resumed)
    assert setup.report["next_epoch"] == 1
    resumed.close()
    with pytest.raises(ProtocolError, match="no longer holds the arbiter key"):
        next(drive(_network("job-2", bank, core, SETTINGS), settings, resume=True))


def _header(step: str, **config: object) -> common_pb2.StepHeader:
    import json

    return common_pb2.StepHeader(job_id="job-3", algorithm="vlr", step=step,
                                 config_json=json.dumps(config))


def test_a_step_of_another_role_or_algorithm_is_refused(tmp_path: Path) -> None:
    _, core = _nodes(tmp_path)
    with pytest.raises(ProtocolError, match="no step 'positions' for a feature node"):
        core.handler.run(_header("positions"), {})
    with pytest.raises(ProtocolError, match="unknown algorithm 'xgb'"):
        core.handler.run(common_pb2.StepHeader(job_id="j", algorithm="xgb", step="open"), {})


def test_a_job_below_the_nodes_own_batch_floor_is_refused(tmp_path: Path) -> None:
    bank, core = _nodes(tmp_path, feature_min_batch=100)
    settings = VLR.settings.model_validate(SETTINGS)  # batch 80 < core's floor of 100
    with pytest.raises(ProtocolError, match=r"\[vlr\] batch_size = 80 is below this node's "
                       r"minimum of 100 \(\[floors\] min_batch"):
        list(drive(_network("job-4", bank, core, SETTINGS), settings,
                   arbiter=_arbiter("job-4")))


@pytest.mark.parametrize(("floor", "value", "setting"), [
    ("min_mask_bits", 48, "mask_bits"),
    ("min_validation_fraction", 0.3, "validation_fraction"),
])
def test_every_floor_is_the_nodes_own(tmp_path: Path, floor: str, value: float,
                                      setting: str) -> None:
    bank, _ = _nodes(tmp_path)
    config = bank.state.config.model_copy(update={"floors": bank.state.config.floors.model_copy(
        update={floor: value})})
    handler = StepHandler(NodeState(config, bank.state.table, insecure=True))
    header = _header("open", label="bank", features=["core"], align_job=ALIGN, settings=SETTINGS)
    with pytest.raises(ProtocolError, match=rf"\[vlr\] {setting} = .* is below this node's "
                                            rf"minimum of {re.escape(f'{value:g}')}"):
        handler.run(header, {})
    audit = (bank.state.state_dir / "audit.jsonl").read_text()
    assert '"train.refused"' in audit and setting in audit


def test_a_typo_in_the_settings_is_named(tmp_path: Path) -> None:
    bank, _ = _nodes(tmp_path)
    header = _header("open", label="bank", features=["core"], align_job=ALIGN,
                     settings={"lerning_rate": 0.1})
    with pytest.raises(DataValidationError, match="lerning_rate: unknown key"):
        bank.handler.run(header, {})


def test_undeclared_and_unsealed_parts_are_refused(tmp_path: Path) -> None:
    bank, core = _nodes(tmp_path)
    settings = VLR.settings.model_validate(SETTINGS)
    steps = drive(_network("job-5", bank, core, SETTINGS), settings, arbiter=_arbiter("job-5"))
    next(steps)  # both nodes are open
    header = common_pb2.StepHeader(job_id="job-5", algorithm="vlr", step="forward")
    with pytest.raises(ProtocolError, match="does not take part 'labels'"):
        core.handler.run(header, {"labels": Payload("labels", b"\x01")})
    plain = Payload("positions:core", np.arange(40, dtype="<u4").tobytes())
    with pytest.raises(ProtocolError, match="must be sealed"):
        core.handler.run(header, {"positions:core": plain})


def test_a_pickled_checkpoint_from_before_schema_1_is_refused_on_resume(tmp_path: Path) -> None:
    from common.errors import ModelFormatError

    bank, _ = _nodes(tmp_path)
    legacy = bank.state.state_dir / "jobs" / "job-6" / "checkpoint.pkl"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"\x80\x04old pickle")
    header = _header("open", label="bank", features=["core"], align_job=ALIGN, settings=SETTINGS,
                     resume=True)
    header.job_id = "job-6"
    with pytest.raises(ModelFormatError, match="before checkpoint schema 1.*start the job anew"):
        bank.handler.run(header, {})

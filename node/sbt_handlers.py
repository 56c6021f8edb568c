"""Node side of SecureBoost training steps: build the role, unseal inputs, seal outputs."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from common.errors import ProtocolError
from common.parts import Payload
from models.sbt import FeatureAlignment, SbtConfig, StepKey
from models.sbt.codec import feature_model_bytes, label_model_bytes
from models.sbt.feature import FeatureParty
from models.sbt.label import LabelParty
from node.alignment import check_job_id
from proto.fedcredit.v1 import common_pb2

if TYPE_CHECKING:
    from node.step_handlers import JobSession, StepRunner


def sbt_config(settings: dict[str, Any]) -> SbtConfig:
    raw = dict(settings)
    if raw.get("goss") is not None:
        raw["goss"] = tuple(raw["goss"])
    return SbtConfig(**raw)


def open_role(runner: StepRunner, header: common_pb2.StepHeader, config: dict[str, Any],
              inputs: dict[str, Payload]) -> tuple[LabelParty | FeatureParty, list[Payload]]:
    """Build this node's SecureBoost role for the job; the bank hands out its public keys."""
    state = runner.state
    settings = sbt_config(config["sbt"])
    align_job = check_job_id(config["align_job"])
    if state.role == "label":
        order = state.alignments.job_order(align_job, state.table.rows)
        labels = state.table.y
        assert labels is not None
        role: LabelParty | FeatureParty = LabelParty(
            header.job_id, state.table.X[order], labels[order], config["features"], settings)
        return role, []
    found = state.alignments.load_feature(align_job)
    role = FeatureParty(state.party, header.job_id, state.table.X,
                        FeatureAlignment(n_rows=found.n_rows, positions=found.positions,
                                         own_rows=found.own_rows), settings)
    return role, []


def label_public_keys(runner: StepRunner, session: JobSession,
                      header: common_pb2.StepHeader) -> list[Payload]:
    role = session.role
    assert isinstance(role, LabelParty)
    context = role.open()
    return [runner.sealed(session, header, f"public_context:{f}", f, context)
            for f in session.config["features"]]


def step(runner: StepRunner, session: JobSession, header: common_pb2.StepHeader,
         inputs: dict[str, bytes]) -> list[Payload]:
    """One SecureBoost step; epoch = tree, batch = level."""
    role = session.role
    tree, level, name = int(header.epoch), int(header.batch), header.step
    key = StepKey(header.job_id, tree, level, name)
    features: list[str] = session.config["features"]
    label = session.config["label"]
    if isinstance(role, FeatureParty):
        me = role.name
        if name == "keys":
            role.open(inputs[f"public_context:{me}"])
            return []
        if name == "histograms":
            data = role.histograms(key, inputs[f"histogram_request:{me}"])
            return [runner.sealed(session, header, f"histograms:{me}", label, data)]
        if name == "split":
            data = role.split(key, inputs[f"split_request:{me}"])
            return [runner.sealed(session, header, f"partitions:{me}", label, data)]
        if name == "end_tree":
            role.end_tree(tree, inputs[f"topology:{me}"])
            return []
        if name == "finish":  # the lookup table and topologies stay here, never the keys
            runner.save_model(session, feature_model_bytes(
                me, role.records(), [role.topology(t) for t in range(role.trees_done)]))
            return []
    elif isinstance(role, LabelParty):
        if name == "keys":
            return label_public_keys(runner, session, header)
        if name == "histograms":
            request = role.histogram_request(key)
            if request is None:
                return []
            return [runner.sealed(session, header, f"histogram_request:{f}", f, request)
                    for f in features]
        if name == "find_splits":
            answers = {f: inputs[f"histograms:{f}"] for f in features
                       if f"histograms:{f}" in inputs}
            requests = role.find_splits(key, answers)
            return [runner.sealed(session, header, f"split_request:{f}", f, data)
                    for f, data in requests.items()]
        if name == "apply_splits":
            role.apply_splits(key, {f: inputs[f"partitions:{f}"] for f in features
                                    if f"partitions:{f}" in inputs})
            return []
        if name == "end_tree":
            topologies = role.end_tree(tree)
            report = asdict(role.reports[-1])
            return [runner.sealed(session, header, f"topology:{f}", f, data)
                    for f, data in topologies.items()] + [
                Payload(name="report", data=json.dumps(report).encode())]
        if name == "finish":
            runner.save_model(session, label_model_bytes(
                role.base_margin, role.trees, tuple(role.feature_parties),
                [asdict(r) for r in role.reports]))
            return []
    raise ProtocolError(f"SecureBoost step {name!r} is not for a {runner.state.role} node")

"""Node side of training steps: unseal inputs, call the algorithm's role object, seal outputs."""

from __future__ import annotations

import json
import logging
import os
import pickle
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from common.errors import ProtocolError
from common.parts import Payload, read_step, write_step
from crypto.seal import PeerKey, Sealer
from models.vlr import FeatureAlignment as VlrAlignment
from models.vlr import StepKey, VlrConfig
from models.vlr.feature import FeatureParty
from models.vlr.label import LabelParty
from models.vlr.scoring import PartyModel
from node import sbt_handlers
from node.alignment import check_job_id
from node.state import NodeState
from proto.fedcredit.v1 import common_pb2

log = logging.getLogger(__name__)


def seal_context(header: common_pb2.StepHeader, name: str, sender: str, recipient: str) -> bytes:
    """Bind a sealed payload to its job, epoch, batch, name and direction (no replay elsewhere).

    The step that produces a payload and the step that consumes it share epoch and batch.
    """
    return (f"step|{header.job_id}|{header.epoch}|{header.batch}|{name}|{sender}>{recipient}"
            .encode())


@dataclass
class JobSession:
    """A training job at this node: the role object and a sealer per peer node."""

    job_id: str
    role: Any  # the algorithm's role object (vertical LR or SecureBoost)
    sealers: dict[str, Sealer]
    config: dict[str, Any]
    last_residual: bytes | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class StepRunner:
    """Dispatches `RunStep` calls to the job's role object; one step of a job at a time."""

    def __init__(self, state: NodeState) -> None:
        self.state = state
        self.jobs: dict[str, JobSession] = {}
        self._lock = threading.Lock()

    # paths in the node's own state directory --------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.state.state_dir / "jobs" / check_job_id(job_id)

    def model_path(self, job_id: str) -> Path:
        return self.state.state_dir / "models" / check_job_id(job_id) / "model.json"

    # dispatch ---------------------------------------------------------------------------------
    def run(self, messages: Iterable[common_pb2.StepMessage]) -> Iterator[common_pb2.StepMessage]:
        header, inputs = read_step(messages)
        job_id = check_job_id(header.job_id)
        if header.algorithm not in ("vlr", "sbt"):
            raise ProtocolError(f"unknown algorithm {header.algorithm!r}")
        try:
            if header.step == "open":
                outputs = self._open(header, inputs)
            else:
                session = self._session(job_id)
                with session.lock:
                    outputs = self._step(session, header, self._unseal(session, header, inputs))
        except (ValueError, KeyError) as err:  # a request the algorithm cannot take
            raise ProtocolError(f"step {header.step} of job {job_id}: {err}") from err
        yield from write_step(outputs)

    def _session(self, job_id: str) -> JobSession:
        with self._lock:
            session = self.jobs.get(job_id)
        if session is None:
            raise ProtocolError(f"job {job_id} is not open at {self.state.party}")
        return session

    def _unseal(self, session: JobSession, header: common_pb2.StepHeader,
                inputs: dict[str, Payload]) -> dict[str, bytes]:
        out = {}
        for name, p in inputs.items():
            if p.sealed:
                if p.recipient != self.state.party or p.sender not in session.sealers:
                    raise ProtocolError(f"payload {name!r} is sealed for {p.recipient!r} by "
                                        f"{p.sender!r}")
                context = seal_context(header, name, p.sender, p.recipient)
                out[name] = session.sealers[p.sender].open(p.data, context)
            else:
                out[name] = p.data
        return out

    def sealed(self, session: JobSession, header: common_pb2.StepHeader, name: str,
                recipient: str, data: bytes) -> Payload:
        context = seal_context(header, name, self.state.party, recipient)
        return Payload(name=name, data=session.sealers[recipient].seal(data, context),
                       sender=self.state.party, recipient=recipient, sealed=True)

    # open -------------------------------------------------------------------------------------
    def _open(self, header: common_pb2.StepHeader,
              inputs: dict[str, Payload]) -> list[Payload]:
        state = self.state
        config = json.loads(header.config_json)
        sealers = {}
        for peer in header.peers:
            public = state.verify_peer(PeerKey(party=peer.party, cert_pem=peer.cert_pem,
                                               sealing_pk=peer.sealing_public_key,
                                               signature=peer.signature))
            sealers[peer.party] = state.sealer_for(public)
        if header.algorithm == "sbt":
            return self._open_sbt(header, config, sealers, inputs)
        vlr = VlrConfig(**config["vlr"])
        if vlr.min_batch < state.config.min_batch:  # our own floor, not the job's
            if vlr.batch_size < state.config.min_batch:
                raise ProtocolError(f"batch size {vlr.batch_size} is below this node's minimum "
                                    f"of {state.config.min_batch} rows")
            vlr = replace(vlr, min_batch=state.config.min_batch)
        align_job = check_job_id(config["align_job"])
        context = inputs["arbiter_context"].data
        role: LabelParty | FeatureParty
        if state.role == "label":
            order = state.alignments.job_order(align_job, state.table.rows)
            labels = state.table.y
            assert labels is not None
            role = LabelParty(header.job_id, state.table.X[order], labels[order],
                              config["features"], vlr)
        else:
            found = state.alignments.load_feature(align_job)
            role = FeatureParty(state.party, header.job_id, state.table.X,
                                VlrAlignment(n_rows=found.n_rows, positions=found.positions,
                                             own_rows=found.own_rows), vlr)
        checkpoint = self.job_dir(header.job_id) / "checkpoint.pkl"
        if config.get("resume") and checkpoint.exists():
            role.load_state_dict(pickle.loads(checkpoint.read_bytes()))
            log.info("job %s: resumed from epoch %d", header.job_id, role.next_epoch)
        session = JobSession(job_id=header.job_id, role=role, sealers=sealers, config=config)
        outputs: list[Payload] = []
        if isinstance(role, LabelParty):
            role.open(context)
            outputs.append(Payload(name="n_batches", data=str(role.n_batches).encode()))
            plan, own_context = role.plan(), role.validation_context()
            for f in config["features"]:
                outputs.append(self.sealed(session, header, f"plan:{f}", f, plan))
                outputs.append(self.sealed(session, header, f"validation_context:{f}", f,
                                            own_context))
        else:
            me = state.party
            opened = self._unseal(session, header, {k: v for k, v in inputs.items()
                                                   if k != "arbiter_context"})
            role.open(context, opened[f"validation_context:{me}"], opened[f"plan:{me}"])
        with self._lock:
            self.jobs[header.job_id] = session
        state.audit.append("train.open", job=header.job_id, purpose="vertical-lr training",
                           rows=state.table.rows, details={"next_epoch": role.next_epoch})
        outputs.append(Payload(name="next_epoch", data=str(role.next_epoch).encode()))
        return outputs

    def _open_sbt(self, header: common_pb2.StepHeader, config: dict[str, Any],
                  sealers: dict[str, Sealer], inputs: dict[str, Payload]) -> list[Payload]:
        role, outputs = sbt_handlers.open_role(self, header, config, inputs)
        session = JobSession(job_id=header.job_id, role=role, sealers=sealers, config=config)
        with self._lock:
            self.jobs[header.job_id] = session
        self.state.audit.append("train.open", job=header.job_id, purpose="secureboost training",
                                rows=self.state.table.rows)
        return outputs

    def save_model(self, session: JobSession, blob: bytes) -> None:
        """A SecureBoost party's trees or lookup table, in this node's own state only."""
        path = self.model_path(session.job_id).with_name("sbt_model.json")
        _atomic_write(path, blob)
        self.state.audit.append("train.model_saved", job=session.job_id,
                                purpose="secureboost training")

    # steps ------------------------------------------------------------------------------------
    def _step(self, session: JobSession, header: common_pb2.StepHeader,
              inputs: dict[str, bytes]) -> list[Payload]:
        if header.algorithm == "sbt":
            return sbt_handlers.step(self, session, header, inputs)
        role = session.role
        if not isinstance(role, (LabelParty, FeatureParty)):
            raise ProtocolError(f"job {header.job_id} is not a vertical LR job")
        key = StepKey(header.job_id, int(header.epoch), _batch(header), header.step)
        step = header.step
        if step == "positions" and isinstance(role, LabelParty):
            data = role.batch_positions(key)
            return [self.sealed(session, header, f"positions:{f}", f, data)
                    for f in session.config["features"]]
        if step == "forward" and isinstance(role, FeatureParty):
            data = role.forward(key, inputs[f"positions:{role.name}"])
            return [self.sealed(session, header, f"forward:{role.name}", session.config["label"],
                                 data)]
        if step == "residual" and isinstance(role, LabelParty):
            forwards = {f: inputs[f"forward:{f}"] for f in session.config["features"]}
            residual = role.residual(key, forwards)
            session.last_residual = residual
            return [self.sealed(session, header, f"residual:{f}", f, residual)
                    for f in session.config["features"]]
        if step == "gradient":
            given = (session.last_residual if isinstance(role, LabelParty)
                     else inputs.get(f"residual:{role.name}"))
            if given is None:
                raise ProtocolError("gradient step without a residual")
            return [Payload(name="gradient", data=role.gradient(key, given))]
        if step == "update":
            role.update(key, inputs["decrypted"])
            return []
        if step == "validate" and isinstance(role, FeatureParty):
            data = role.validation_logits(key)
            return [self.sealed(session, header, f"validation:{role.name}",
                                 session.config["label"], data)]
        if step == "end_epoch":
            if isinstance(role, LabelParty):
                parts = {f: inputs[f"validation:{f}"] for f in session.config["features"]}
                report = role.end_epoch(int(header.epoch), parts)
                self._checkpoint(session)
                return [Payload(name="report", data=json.dumps(report.__dict__).encode())]
            improved = json.loads(header.config_json or "{}").get("improved", False)
            role.end_epoch(int(header.epoch), bool(improved))
            self._checkpoint(session)
            return []
        if step == "finish":
            role.finish()
            self._save_model(session)
            return []
        raise ProtocolError(f"step {step!r} is not for a {self.state.role} node")

    def _checkpoint(self, session: JobSession) -> None:
        path = self.job_dir(session.job_id) / "checkpoint.pkl"
        _atomic_write(path, pickle.dumps(session.role.state_dict()))
        self.state.audit.append("train.checkpoint", job=session.job_id,
                                purpose="vertical-lr training",
                                details={"next_epoch": session.role.next_epoch})

    def _save_model(self, session: JobSession) -> None:
        """This party's part of the model (best epoch's weights and its own preprocessing)."""
        role = session.role
        if role.scaler is None:
            raise ProtocolError(f"job {session.job_id} finished before it was opened")
        model = PartyModel(party=self.state.party, role=self.state.role, job=session.job_id,
                           features=tuple(self.state.table.features), weights=role.weights,
                           mean=role.scaler.mean, scale=role.scaler.scale)
        _atomic_write(self.model_path(session.job_id), model.to_json().encode())
        self.state.audit.append("train.model_saved", job=session.job_id,
                                purpose="vertical-lr training")


def _batch(header: common_pb2.StepHeader) -> int:
    return -1 if header.step in ("validate", "end_epoch", "finish") else int(header.batch)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

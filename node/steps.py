"""The node's one generic step handler: any declared algorithm's step, with no gRPC in sight.

For a `RunStep` it looks the step up in the algorithm registry by (algorithm, step, this node's
role), refuses parts the step does not take, unseals node-to-node parts, calls the declared step
function on the job's role object, seals each output to its declared recipient, keeps `STORE`
outputs as this node's model file and checkpoints where the declaration says so.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from common.errors import (
    DataValidationError,
    ModelFormatError,
    ProtocolError,
    describe_validation,
)
from common.files import atomic_write, load_state, state_bytes
from common.payload import Payload
from crypto.seal import PeerKey, Sealer
from models.protocol import (
    Algorithm,
    BelowFloor,
    Call,
    JobSpec,
    RoleSetup,
    Step,
    StepKey,
    To,
    accepts,
    address,
)
from models.registry import algorithm
from models.vlr import FeatureAlignment
from node.alignment import check_job_id
from node.job_record import JobRecord, save_job_record
from node.snapshot import Snapshot
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
    """A training job at this node: its algorithm, role object and a sealer per peer node."""

    job_id: str
    algorithm: Algorithm
    role: Any
    label: str
    features: tuple[str, ...]
    sealers: dict[str, Sealer]
    record: JobRecord | None = None  # saved beside the model when the node stores it
    columns: tuple[str, ...] = ()  # the table's columns in the snapshot the job opened on
    snapshot: Snapshot | None = None  # the snapshot the job opened on (early warning's reference)
    memo: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class StepHandler:
    """Runs `RunStep` requests against the jobs open at this node; one step of a job at a time."""

    def __init__(self, state: NodeState) -> None:
        self.state = state
        self.jobs: dict[str, JobSession] = {}
        self._lock = threading.Lock()

    def job_dir(self, job_id: str) -> Path:
        return self.state.state_dir / "jobs" / check_job_id(job_id)

    def model_path(self, job_id: str, algo: Algorithm) -> Path:
        return self.state.state_dir / "models" / check_job_id(job_id) / algo.model_file

    def run(self, header: common_pb2.StepHeader, inputs: dict[str, Payload]) -> list[Payload]:
        job_id = check_job_id(header.job_id)
        algo = algorithm(header.algorithm)
        step = algo.step(header.step, self.state.role)
        extra: dict[str, Any] = json.loads(header.config_json or "{}")
        try:
            session = self._open(algo, header, extra) if step.opens else self._session(job_id)
            if session.algorithm is not algo:
                raise ProtocolError(f"job {job_id} is a {session.algorithm.name} job")
            with session.lock:
                return self._step(session, step, header, extra, inputs)
        except (ValueError, KeyError) as err:  # a request the algorithm cannot take
            raise ProtocolError(f"step {header.step} of job {job_id}: {err}") from err

    def _session(self, job_id: str) -> JobSession:
        with self._lock:
            session = self.jobs.get(job_id)
        if session is None:
            raise ProtocolError(f"job {job_id} is not open at {self.state.party}")
        return session

    def _step(self, session: JobSession, step: Step, header: common_pb2.StepHeader,
              extra: dict[str, Any], inputs: dict[str, Payload]) -> list[Payload]:
        me, algo = self.state.party, session.algorithm
        key = StepKey(session.job_id, int(header.epoch),
                      int(header.batch) if step.per_batch else -1, header.step)
        call = Call(key=key, inputs=self._unseal(session, step, header, inputs), extra=extra,
                    me=me, label=session.label, features=session.features, memo=session.memo,
                    columns=session.columns)
        outputs: list[Payload] = []
        stored = False
        try:
            produced = step.run(session.role, call)
        finally:  # what a role asks to audit (merges, refusals), even when the step failed
            for event, details in getattr(session.role, "drain_audit", list)():
                self.state.audit.append(event, job=session.job_id, purpose=algo.purpose,
                                        details=details)
        for to, payload in address(step, produced, call):
            if to is To.STORE:
                stored = True
                atomic_write(self.model_path(session.job_id, algo), payload.data)
                if session.record is not None:
                    save_job_record(self.state.state_dir, session.record)
                if session.snapshot is not None and self.state.role == "feature":
                    self.state.references.keep(session.job_id, session.snapshot, "training")
                self.state.audit.append("train.model_saved", job=session.job_id,
                                        purpose=algo.purpose)
            elif to is To.DRIVER:
                outputs.append(payload)
            else:
                outputs.append(self._seal(session, header, payload))
        if step.checkpoint:
            atomic_write(self.job_dir(session.job_id) / "checkpoint.npz",
                         state_bytes(session.role.state_dict()))
            self.state.audit.append("train.checkpoint", job=session.job_id, purpose=algo.purpose,
                                    details={"next_epoch": session.role.next_epoch})
        if stored:  # the job ended here: anchor the audit head with the coordinator
            self.state.anchors.deposit_soon()
        return outputs

    # sealing ----------------------------------------------------------------------------------
    def _unseal(self, session: JobSession, step: Step, header: common_pb2.StepHeader,
                inputs: dict[str, Payload]) -> dict[str, bytes]:
        sealed_names = session.algorithm.node_to_node()
        out = {}
        for name, p in inputs.items():
            if not accepts(step, name):
                raise ProtocolError(f"step {step.name} does not take part {name!r}")
            if name.split(":", 1)[0] in sealed_names and not p.sealed:
                raise ProtocolError(f"part {name!r} travels between nodes and must be sealed")
            if p.sealed:
                if p.recipient != self.state.party or p.sender not in session.sealers:
                    raise ProtocolError(f"payload {name!r} is sealed for {p.recipient!r} by "
                                        f"{p.sender!r}")
                context = seal_context(header, name, p.sender, p.recipient)
                out[name] = session.sealers[p.sender].open(p.data, context)
            else:
                out[name] = p.data
        return out

    def _seal(self, session: JobSession, header: common_pb2.StepHeader,
              payload: Payload) -> Payload:
        me, recipient = self.state.party, payload.recipient
        if recipient not in session.sealers:
            raise ProtocolError(f"part {payload.name!r} goes to {recipient!r}, whose sealing key "
                                f"this node was not given when job {header.job_id} opened")
        context = seal_context(header, payload.name, me, recipient)
        return Payload(name=payload.name, sender=me, recipient=recipient, sealed=True,
                       data=session.sealers[recipient].seal(payload.data, context))

    def _stored(self, job: str, name: str) -> bytes:
        """This node's saved model file `name` of job `job` (an input of a later job)."""
        path = self.state.state_dir / "models" / check_job_id(job) / Path(name).name
        if not path.is_file():
            raise ProtocolError(f"{self.state.party} holds no model file {path.name} of job "
                                f"{job}: run that job first (or name one that finished)")
        return path.read_bytes()

    # open -------------------------------------------------------------------------------------
    def _open(self, algo: Algorithm, header: common_pb2.StepHeader,
              extra: dict[str, Any]) -> JobSession:
        """Build this node's role for a job from its own table and the job's alignment."""
        state = self.state
        try:
            job = JobSpec.model_validate(extra)
            settings = algo.settings.model_validate(job.settings)
        except ValidationError as err:
            raise DataValidationError(
                describe_validation(err, f"job {header.job_id} [{algo.name}]")) from err
        try:
            settings = algo.apply_floors(settings, state.config.floors)
        except BelowFloor as err:
            state.audit.append("train.refused", job=header.job_id, purpose=algo.purpose,
                               details=err.audit_details())
            raise
        sealers = {}
        for peer in header.peers:
            public = state.verify_peer(PeerKey(party=peer.party, cert_pem=peer.cert_pem,
                                               sealing_pk=peer.sealing_public_key,
                                               signature=peer.signature),
                                       job=header.job_id)
            sealers[peer.party] = state.sealer_for(public)
        align_job = check_job_id(job.align_job)
        snapshot = state.snapshot()  # the job keeps this one whatever is loaded meanwhile
        table = snapshot.training  # the labelled rows at a bank: alignments refer to this view
        state.alignments.verify(align_job, table.ids, state.party, table.source, job.label,
                                snapshot.version)
        if state.role == "label":
            order = state.alignments.load_order(align_job)
            labels = table.y
            if labels is None:
                raise ProtocolError(f"{state.party} holds no labels")
            setup = RoleSetup(job=header.job_id, party=state.party, role="label",
                              label=job.label, features=tuple(job.features),
                              columns=tuple(table.features), X=table.X[order],
                              y=labels[order], alignment=None, stored=self._stored)
        else:
            found = state.alignments.load_feature(align_job)
            setup = RoleSetup(job=header.job_id, party=state.party, role="feature",
                              label=job.label, features=tuple(job.features),
                              columns=tuple(table.features), X=table.X, y=None,
                              alignment=FeatureAlignment(n_rows=found.n_rows,
                                                         positions=found.positions,
                                                         own_rows=found.own_rows),
                              stored=self._stored)
        role = algo.make_role(setup, settings)
        checkpoint = self.job_dir(header.job_id) / "checkpoint.npz"
        legacy = checkpoint.with_suffix(".pkl")  # written with pickle before schema 1
        if job.resume and algo.resumable and checkpoint.exists():
            role.load_state_dict(load_state(checkpoint.read_bytes(), str(checkpoint)))
            log.info("job %s: resumed from round %d", header.job_id, role.next_epoch)
        elif job.resume and algo.resumable and legacy.exists():
            raise ModelFormatError(f"{legacy} was written before checkpoint schema 1 and "
                                   "cannot be read; start the job anew")
        record = JobRecord(job=header.job_id, algorithm=algo.name, label=job.label,
                           features=list(job.features), align_job=align_job,
                           settings=settings.model_dump(mode="json"))
        session = JobSession(job_id=header.job_id, algorithm=algo, role=role, label=job.label,
                             features=tuple(job.features), sealers=sealers, record=record,
                             columns=tuple(table.features), snapshot=snapshot)
        with self._lock:
            self.jobs[header.job_id] = session
        state.audit.append("train.open", job=header.job_id, purpose=algo.purpose,
                           rows=table.rows, details={"snapshot": snapshot.version})
        return session

"""What the coordinator does for each call, independent of gRPC plumbing."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import grpc
from google.protobuf import json_format
from pydantic import BaseModel

from common.audit import AuditLog
from common.errors import DataValidationError, PeerUnavailable, ProtocolError, TrustError
from common.ids import check_job_id
from common.production import refuse_in_production
from common.tls import TlsFiles
from coordinator.align import align_pair
from coordinator.anchors import Anchoring
from coordinator.config import CoordinatorConfig
from coordinator.job_admin import check_alignment, delete_job, job_status
from coordinator.jobs import run_job
from coordinator.nodes import NodeClients
from coordinator.scoring import ScoringRelay
from coordinator.steps import JobCancelled
from coordinator.store import JobRecord, NodeRecord, Store
from coordinator.vault import FileVault
from crypto.pki import verify_peer_certificate
from crypto.pseudonym import PseudonymKey
from crypto.psi_pool import PsiWorkers
from models.jobs import TrainingJob, job_record, parse_job
from models.protocol import Algorithm
from models.registry import ALGORITHMS, algorithm
from proto.fedcredit.v1 import common_pb2, coordinator_pb2, node_pb2

log = logging.getLogger(__name__)

ROLE_NAMES = {common_pb2.ROLE_LABEL: "label", common_pb2.ROLE_FEATURE: "feature"}
RELOAD_DEADLINE_S = 600.0  # a node re-reads and validates its whole table


class Coordinator:
    """Registry, job runner and relay."""

    def __init__(self, config: CoordinatorConfig, *, insecure: bool = False,
                 client_interceptors: Sequence[grpc.UnaryUnaryClientInterceptor] = ()) -> None:
        if insecure:
            refuse_in_production("--insecure (plaintext gRPC, no identities)")
        self.config = config
        self.insecure = insecure
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.tls: TlsFiles | None = None
        self.ca_pem: bytes | None = None
        if not insecure:
            if config.tls is None:
                raise TrustError("the coordinator config has no [tls] section; pass --insecure "
                                 "only for development")
            self.tls = TlsFiles(ca=config.tls.ca, cert=config.tls.cert, key=config.tls.key)
            self.tls.check("coordinator")
            self.ca_pem = self.tls.read()[0]
        self.store = Store(config.database)
        self.audit = AuditLog(config.state_dir / "audit.jsonl", actor="coordinator")
        self.clients = NodeClients(self.tls, client_interceptors)
        self.scoring = ScoringRelay(
            self.store, self.clients, self.audit,
            PseudonymKey.load_or_create(config.state_dir / "pseudonym.key"),
            daily_evaluations=config.pseudonym_evaluations_per_day, workers=PsiWorkers())
        self._cancels: dict[str, threading.Event] = {}  # running training jobs' cancel flags
        # Each node's data snapshot status, as its last registration, heartbeat or reload said:
        # live status, not a record (a restarted coordinator has it again within a heartbeat).
        self._snapshots: dict[str, common_pb2.DataSnapshot] = {}
        self._snapshots_lock = threading.Lock()
        self.anchoring = Anchoring("coordinator", self.store, self.audit, self.clients, self.tls)
        for job in self.store.jobs():
            if job.state == "running":  # the coordinator stopped while the job ran
                self.store.update_job(job.job_id, state="interrupted",
                                      error="coordinator restarted; resume the job")

    def close(self) -> None:
        self.anchoring.deposit_own()  # our head at shutdown, with every registered node
        self.clients.close()
        if self.scoring.workers is not None:
            self.scoring.workers.close()
        self.store.close()

    # registry -------------------------------------------------------------------------------
    def register(self, request: coordinator_pb2.RegisterNodeRequest,
                 caller: str | None) -> coordinator_pb2.RegisterNodeResponse:
        info = request.info
        party = info.party
        if not self.insecure and caller != party:
            raise TrustError(f"certificate of {caller!r} cannot register party {party!r}")
        if self.config.parties and party not in self.config.parties:
            raise TrustError(f"party {party!r} is not in this network's party list")
        if info.role not in ROLE_NAMES:
            raise ProtocolError(f"party {party!r} registered without a role")
        declared = self.config.parties.get(party, "any")
        if declared not in ("any", ROLE_NAMES[info.role]):
            self.audit.append("node.refused", peer=party, purpose="registration",
                              details={"role": ROLE_NAMES[info.role], "declared": declared})
            raise TrustError(f"party {party!r} registered with role {ROLE_NAMES[info.role]!r}, "
                             f"but the operator declared it {declared!r} ([parties] in the "
                             f"coordinator config)")
        if info.key.party != party:
            raise TrustError(f"sealing key of {party!r} is signed for {info.key.party!r}")
        if self.ca_pem is not None:
            verify_peer_certificate(self.ca_pem, info.key.cert_pem, party)
        if not request.endpoint or ":" not in request.endpoint:
            raise ProtocolError(f"endpoint {request.endpoint!r} is not host:port")
        now = time.time()
        self._keep_snapshot(party, info.snapshot)
        schema = json_format.MessageToDict(info.schema, preserving_proto_field_name=True)
        record = NodeRecord(
            party=party, role=ROLE_NAMES[info.role], endpoint=request.endpoint, rows=info.rows,
            schema=schema, cert_pem=info.key.cert_pem,
            sealing_public_key=info.key.sealing_public_key, signature=info.key.signature,
            registered_at=now)
        known = self.store.node(party)
        if known is not None and replace(record, registered_at=known.registered_at) == known:
            # A node's heartbeat: nothing changed, so nothing to store, audit or log.
            return coordinator_pb2.RegisterNodeResponse(
                party=party, registered_at_unix=int(known.registered_at))
        self.store.upsert_node(record)
        self.audit.append("node.register", peer=party, purpose="registration", rows=info.rows,
                          details={"role": ROLE_NAMES[info.role], "endpoint": request.endpoint})
        log.info("registered %s (%s, %d rows) at %s", party, ROLE_NAMES[info.role], info.rows,
                 request.endpoint)
        return coordinator_pb2.RegisterNodeResponse(party=party, registered_at_unix=int(now))

    def list_nodes(self) -> coordinator_pb2.ListNodesResponse:
        out = []
        for record in self.store.nodes():
            health = self.clients.get(record).health_status()
            schema = common_pb2.TableSchema()
            json_format.ParseDict(record.schema, schema)
            out.append(coordinator_pb2.NodeStatus(
                party=record.party,
                role=common_pb2.ROLE_LABEL if record.role == "label" else common_pb2.ROLE_FEATURE,
                endpoint=record.endpoint, health=health, rows=record.rows, schema=schema,
                registered_at_unix=int(record.registered_at),
                snapshot=self._snapshot_of(record.party)))
        return coordinator_pb2.ListNodesResponse(nodes=out)

    def _keep_snapshot(self, party: str, snapshot: common_pb2.DataSnapshot) -> None:
        with self._snapshots_lock:
            self._snapshots[party] = snapshot

    def _snapshot_of(self, party: str) -> common_pb2.DataSnapshot | None:
        with self._snapshots_lock:
            return self._snapshots.get(party)

    def reload_node(self, request: coordinator_pb2.ReloadNodeRequest) -> node_pb2.ReloadDataReply:
        """Have a registered node re-read its data source now; its answer says what happened."""
        record = self.store.node(request.party)
        if record is None:
            raise ProtocolError(f"no node {request.party!r} is registered (see `fedcredit nodes`)")
        try:
            reply: node_pb2.ReloadDataReply = self.clients.get(record).stub.ReloadData(
                node_pb2.ReloadDataRequest(), timeout=RELOAD_DEADLINE_S)
        except grpc.RpcError as err:
            raise PeerUnavailable(f"node {record.party} at {record.endpoint} did not reload: "
                                  f"{err.code().name}: {err.details()}") from None
        self._keep_snapshot(record.party, reply.snapshot)
        self.audit.append("node.reload", peer=record.party, purpose="data refresh",
                          details={"outcome": reply.outcome,
                                   "version": reply.snapshot.version})
        return reply

    # alignment ------------------------------------------------------------------------------
    def align(self, request: coordinator_pb2.AlignRequest,
              caller: str | None) -> coordinator_pb2.AlignResponse:
        names = list(request.feature_parties) or [n.party for n in self.store.nodes()
                                                  if n.role == "feature"]
        label_record, features = self._parties(request.label_party, names)
        if not features:
            raise ProtocolError("no feature node is registered")
        mode = request.mode or node_pb2.PSI_MODE_FULL
        job_id = check_job_id(request.job_id, DataValidationError) if request.job_id else \
            f"align-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        parties = [label_record.party, *[f.party for f in features]]
        self.store.create_job(job_id, "align", parties,
                              {"mode": node_pb2.PsiMode.Name(mode), "operator": caller or ""})
        self.audit.append("align.start", job=job_id, peer=",".join(parties), purpose="alignment")
        start = time.perf_counter()
        label = self.clients.get(label_record)
        pairs = []
        try:
            for record in features:
                result = align_pair(label, self.clients.get(record), job_id, mode,
                                    self.config.psi_deadline_seconds, self.config.limits)
                pairs.append(coordinator_pb2.PairAlignment(
                    party=result.party, label_rows=result.label_rows,
                    party_rows=result.party_rows, intersection_size=result.intersection_size,
                    seconds=result.seconds))
                self.store.update_job(job_id, metrics={
                    "intersections": {p.party: p.intersection_size for p in pairs}})
        except Exception as err:
            self.store.update_job(job_id, state="failed", error=str(err))
            self.audit.append("align.failed", job=job_id, purpose="alignment",
                              details={"error": str(err)[:500]})
            self.anchoring.deposit_own_soon()
            raise
        seconds = time.perf_counter() - start
        self.store.update_job(job_id, state="done", metrics={"seconds": round(seconds, 3)})
        self.audit.append("align.done", job=job_id, purpose="alignment",
                          details={"intersections": {p.party: p.intersection_size
                                                     for p in pairs}})
        self.anchoring.deposit_own_soon()
        return coordinator_pb2.AlignResponse(job_id=job_id, pairs=pairs, seconds=seconds)

    def list_jobs(self) -> coordinator_pb2.ListJobsResponse:
        return coordinator_pb2.ListJobsResponse(jobs=[job_status(j) for j in self.store.jobs()])

    def get_job(self, job_id: str) -> coordinator_pb2.JobStatus:
        job = self.store.job(job_id)
        if job is None:
            raise ProtocolError(f"no job {job_id!r}")
        return job_status(job, with_config=True)

    def cancel_job(self, job_id: str, caller: str | None) -> coordinator_pb2.JobStatus:
        """Ask a running training job to stop at its next step boundary (it ends cancelled)."""
        job = self.store.job(job_id)
        if job is None:
            raise ProtocolError(f"no job {job_id!r}")
        if job.kind not in ALGORITHMS:
            raise ProtocolError(f"job {job_id} is a {job.kind} job; only training jobs cancel")
        flag = self._cancels.get(job_id)
        if job.state != "running" or flag is None:
            raise ProtocolError(f"job {job_id} is {job.state}, not running; nothing to cancel")
        flag.set()
        self.audit.append("train.cancel", job=job_id, peer=caller or "",
                          purpose=algorithm(job.kind).purpose)
        return self.get_job(job_id)

    def delete_job(self, request: coordinator_pb2.DeleteJobRequest,
                   caller: str | None) -> coordinator_pb2.DeleteJobResponse:
        reply = delete_job(self.store, request.job_id, force=request.force)
        self.audit.append("job.delete", job=reply.job_id, peer=caller or "", purpose="operation",
                          details={"kind": reply.kind, "state": reply.state,
                                   "force": request.force})
        return reply

    # training -------------------------------------------------------------------------------
    def train(self, request: coordinator_pb2.TrainRequest,
              caller: str | None) -> coordinator_pb2.JobStatus:
        kind = request.algorithm
        if kind not in ALGORITHMS:
            raise DataValidationError(f"unknown algorithm {kind!r}: expected one of "
                                      f"{', '.join(sorted(ALGORITHMS))}")
        algo = algorithm(kind)
        try:
            raw = json.loads(request.config_json or "{}")
        except ValueError as err:
            raise DataValidationError(f"training job is not JSON: {err}") from err
        job, settings = parse_job(algo, raw)
        self._training_parties(job)
        if algo.prepare is not None:
            settings = algo.prepare(settings, [job.label, *job.features], self._done_report)
        job_id = check_job_id(request.job_id, DataValidationError) if request.job_id else \
            f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        check_alignment(self.store, job)
        self.store.create_job(job_id, kind, [job.label, *job.features],
                              {**job_record(algo, job, settings), "operator": caller or ""})
        self.audit.append("train.start", job=job_id, peer=",".join(job.features),
                          purpose=algo.purpose)
        self._start(job_id, algo, job, settings, resume=False)
        return self.get_job(job_id)

    def resume_job(self, job_id: str) -> coordinator_pb2.JobStatus:
        job = self.store.job(job_id)
        if job is None:
            raise ProtocolError(f"no job {job_id!r}")
        if job.kind not in ALGORITHMS:
            raise ProtocolError(f"job {job_id} is a {job.kind} job; only training jobs resume")
        if job.state in ("running", "done"):
            raise ProtocolError(f"job {job_id} is {job.state}; nothing to resume")
        algo = algorithm(job.kind)
        training, settings = parse_job(algo, job.config)
        self._training_parties(training)
        self.store.update_job(job_id, state="running", error="")
        self.audit.append("train.resume", job=job_id, purpose=algo.purpose)
        self._start(job_id, algo, training, settings, resume=True)
        return self.get_job(job_id)

    def _done_report(self, job_id: str) -> dict[str, Any] | None:
        """The last report of a finished job (what `fedcredit jobs show` prints), or None."""
        found = self.store.job(job_id)
        if found is None or found.state != "done":
            return None
        history = found.metrics.get("history") or [{}]
        report: dict[str, Any] = history[-1]
        return report

    def _training_parties(self, job: TrainingJob) -> tuple[NodeRecord, list[NodeRecord]]:
        return self._parties(job.label, job.features)

    def _parties(self, label_party: str, feature_parties: Sequence[str],
                 ) -> tuple[NodeRecord, list[NodeRecord]]:
        """The registered label node and feature nodes a job names, or why one is not."""
        label = self.store.node(label_party)
        if label is None or label.role != "label":
            raise ProtocolError(f"{label_party!r} is not a registered label node")
        features = []
        for name in feature_parties:
            record = self.store.node(name)
            if record is None or record.role != "feature":
                raise ProtocolError(f"{name!r} is not a registered feature node")
            features.append(record)
        return label, features

    def _start(self, job_id: str, algo: Algorithm, job: TrainingJob, settings: BaseModel, *,
               resume: bool) -> None:
        self._cancels[job_id] = threading.Event()
        thread = threading.Thread(target=self._run_job,
                                  args=(job_id, algo, job, settings, resume),
                                  name=f"job-{job_id}", daemon=True)
        thread.start()

    def _run_job(self, job_id: str, algo: Algorithm, job: TrainingJob, settings: BaseModel,
                 resume: bool) -> None:
        """Run a training job to its end (a job that cannot resume restarts from round 0)."""
        history: list[dict[str, Any]] = list(
            (self.store.job(job_id) or _EMPTY_JOB).metrics.get("history", []))
        if not algo.resumable:
            history.clear()

        def on_epoch(report: dict[str, Any]) -> None:
            epoch = report["epoch"]
            history[:] = [h for h in history if h["epoch"] < epoch] + [report]
            self.store.update_job(job_id, metrics={
                "epoch": epoch, "loss": report.get("loss"), "auc": report.get("auc"),
                "ks": report.get("ks"), "best_epoch": report.get("best_epoch", epoch),
                "history": history})

        try:
            label, features = self._training_parties(job)
            run_job(algo, job_id, job, settings, self.clients.get(label),
                    [self.clients.get(f) for f in features], resume=resume, on_epoch=on_epoch,
                    cancelled=self._cancels[job_id].is_set,
                    limits=self.config.limits,
                    vault=FileVault(self.config.state_dir / "vault" / job_id))
            best = algo.best(history)
            metrics = {"auc": best.get("auc"), "ks": best.get("ks"),
                       "best_epoch": best.get("best_epoch"), "epochs": len(history)}
            if "iv_table" in best:  # a binning job's figures: the IV table (no per-bin counts)
                metrics["iv_table"] = best["iv_table"]
            model = self.store.register_model(job.model_name or f"{algo.name}-{job.label}",
                                              algo.name, job_id, [job.label, *job.features],
                                              metrics)
            self.store.update_job(job_id, state="done",
                                  metrics={"model_id": model.model_id, "epochs": len(history)})
            self.audit.append("train.done", job=job_id, purpose=algo.purpose,
                              details={"model": model.model_id, "epochs": len(history)})
        except JobCancelled as err:
            log.info("job %s cancelled", job_id)
            self.store.update_job(job_id, state="cancelled",
                                  error=f"{err}; resume it with `fedcredit jobs resume {job_id}`")
            self.audit.append("train.cancelled", job=job_id, purpose=algo.purpose)
        except Exception as err:  # noqa: BLE001 - the job records why it failed
            log.warning("job %s failed: %s", job_id, err)
            self.store.update_job(job_id, state="failed", error=str(err)[:2000])
            self.audit.append("train.failed", job=job_id, purpose=algo.purpose,
                              details={"error": str(err)[:500]})
        finally:
            self._cancels.pop(job_id, None)
            self.anchoring.deposit_own_soon()  # a job's end: our head goes to the nodes

    def list_models(self) -> coordinator_pb2.ListModelsResponse:
        return coordinator_pb2.ListModelsResponse(models=[
            coordinator_pb2.ModelInfo(model_id=m.model_id, name=m.name, version=m.version,
                                      algorithm=m.algorithm, job_id=m.job_id, parties=m.parties,
                                      metrics_json=json.dumps(m.metrics),
                                      created_at_unix=int(m.created_at))
            for m in self.store.models()])


_EMPTY_JOB = JobRecord(job_id="", kind="", state="", parties=[], config={}, metrics={}, error="",
                       created_at=0.0, updated_at=0.0)

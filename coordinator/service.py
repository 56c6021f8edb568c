"""What the coordinator does for each call, independent of gRPC plumbing."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Sequence

import grpc
from google.protobuf import json_format

from common.audit import AuditLog
from common.errors import ProtocolError, TrustError
from common.tls import TlsFiles
from coordinator.align import align_pair
from coordinator.config import CoordinatorConfig
from coordinator.nodes import NodeClients
from coordinator.store import NodeRecord, Store
from crypto.pki import verify_peer_certificate
from proto.fedcredit.v1 import common_pb2, coordinator_pb2, node_pb2

log = logging.getLogger(__name__)

ROLE_NAMES = {common_pb2.ROLE_LABEL: "label", common_pb2.ROLE_FEATURE: "feature"}


class Coordinator:
    """Registry, job runner and relay."""

    def __init__(self, config: CoordinatorConfig, *, insecure: bool = False,
                 client_interceptors: Sequence[grpc.UnaryUnaryClientInterceptor] = ()) -> None:
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
            self.ca_pem = self.tls.read()[0]
        self.store = Store(config.database)
        self.audit = AuditLog(config.state_dir / "audit.jsonl", actor=config.name)
        self.clients = NodeClients(self.tls, client_interceptors)

    def close(self) -> None:
        self.clients.close()
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
        if info.key.party != party:
            raise TrustError(f"sealing key of {party!r} is signed for {info.key.party!r}")
        if self.ca_pem is not None:
            verify_peer_certificate(self.ca_pem, info.key.cert_pem, party)
        if not request.endpoint or ":" not in request.endpoint:
            raise ProtocolError(f"endpoint {request.endpoint!r} is not host:port")
        now = time.time()
        schema = json_format.MessageToDict(info.schema, preserving_proto_field_name=True)
        self.store.upsert_node(NodeRecord(
            party=party, role=ROLE_NAMES[info.role], endpoint=request.endpoint, rows=info.rows,
            schema=schema, cert_pem=info.key.cert_pem,
            sealing_public_key=info.key.sealing_public_key, signature=info.key.signature,
            registered_at=now))
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
                registered_at_unix=int(record.registered_at)))
        return coordinator_pb2.ListNodesResponse(nodes=out)

    # alignment ------------------------------------------------------------------------------
    def align(self, request: coordinator_pb2.AlignRequest,
              caller: str | None) -> coordinator_pb2.AlignResponse:
        label_record = self.store.node(request.label_party)
        if label_record is None or label_record.role != "label":
            raise ProtocolError(f"{request.label_party!r} is not a registered label node")
        names = list(request.feature_parties) or [n.party for n in self.store.nodes()
                                                  if n.role == "feature"]
        features = []
        for name in names:
            record = self.store.node(name)
            if record is None or record.role != "feature":
                raise ProtocolError(f"{name!r} is not a registered feature node")
            features.append(record)
        if not features:
            raise ProtocolError("no feature node is registered")
        mode = request.mode or node_pb2.PSI_MODE_FULL
        job_id = request.job_id or f"align-{time.strftime('%Y%m%d-%H%M%S')}-" \
                                   f"{secrets.token_hex(3)}"
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
                                    self.config.psi_deadline_seconds)
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
            raise
        seconds = time.perf_counter() - start
        self.store.update_job(job_id, state="done", metrics={"seconds": round(seconds, 3)})
        self.audit.append("align.done", job=job_id, purpose="alignment",
                          details={"intersections": {p.party: p.intersection_size
                                                     for p in pairs}})
        return coordinator_pb2.AlignResponse(job_id=job_id, pairs=pairs, seconds=seconds)

    def list_jobs(self) -> coordinator_pb2.ListJobsResponse:
        return coordinator_pb2.ListJobsResponse(jobs=[
            coordinator_pb2.JobStatus(job_id=j.job_id, kind=j.kind, state=j.state,
                                      parties=j.parties, metrics_json=json.dumps(j.metrics),
                                      created_at_unix=int(j.created_at),
                                      updated_at_unix=int(j.updated_at), error=j.error)
            for j in self.store.jobs()])

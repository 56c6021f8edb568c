"""Everything a running node holds: config, validated table, keys, audit log, PSI sessions."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.audit import AuditLog
from common.errors import ProtocolError, TrustError
from common.production import refuse_in_production
from common.tls import TlsFiles
from crypto import seal
from crypto.psi import PsiWorkers
from node.alignment import AlignmentStore
from node.anchoring import NodeAnchors
from node.config import NodeConfig
from node.datasource import NodeTable, load_table
from node.monitoring.reference import ReferenceStore
from node.snapshot import LiveTable, Snapshot
from node.snapshot_versions import SnapshotVersions
from node.trust import verify_pinned

log = logging.getLogger(__name__)

SESSION_TTL_SECONDS = 3600.0


@dataclass
class PsiSession:
    """One PSI run between this node and a peer, kept in memory between the protocol steps."""

    job_id: str
    peer: str
    mode: int
    engine: Any  # crypto.psi.LabelPsi or FeaturePsi
    sealer: seal.Sealer
    snapshot: Snapshot  # the table the alignment is made on, whatever is loaded meanwhile
    started: float = field(default_factory=time.monotonic)
    sent_chunks: int = 0


class NodeState:
    """The node's long-lived state, shared by the servicer's threads."""

    def __init__(self, config: NodeConfig, table: NodeTable, *, insecure: bool = False) -> None:
        if insecure:
            refuse_in_production("--insecure (plaintext gRPC, no identities)")
        self.config = config
        self.party = config.party
        self.role = config.role
        self.insecure = insecure
        self.state_dir = Path(config.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.tls: TlsFiles | None = None if insecure else TlsFiles(
            ca=config.tls.ca, cert=config.tls.cert, key=config.tls.key
        )
        if self.tls is not None:
            self.tls.check(f"node {self.party}")
        self.sealing_key = seal.SealingKey.load_or_create(self.state_dir / "sealing.key")
        self.ca_pem: bytes | None = None
        self.peer_key = self._own_peer_key()
        self.audit = AuditLog(self.state_dir / "audit.jsonl", actor=self.party)
        self.live = LiveTable(config.data, config.role, SnapshotVersions.open(self.state_dir),
                              self.audit, table)
        if self.tls is not None and not config.trust.peers:
            log.warning("[trust] peers pins no certificate: %s will refuse every peer's sealing "
                        "key (pin them with `fedcredit pki fingerprint`)", self.party)
        self.anchors = NodeAnchors(self)
        self.alignments = AlignmentStore(self.state_dir)
        self.references = ReferenceStore(self.state_dir)  # early warning's reference snapshots
        if self.role == "feature":
            config.monitoring.check_columns(table.features, self.party)
        self.workers = PsiWorkers()
        self._sessions: dict[tuple[str, str], PsiSession] = {}
        self._lock = threading.Lock()

    @property
    def table(self) -> NodeTable:
        """The current snapshot's table (take `snapshot()` once for a whole request)."""
        return self.live.current().table

    @property
    def training(self) -> NodeTable:
        """The current snapshot's training view: labelled rows only at a bank."""
        return self.live.current().training

    def snapshot(self) -> Snapshot:
        """The current snapshot: a request or a job keeps the one it took."""
        return self.live.current()

    @classmethod
    def from_config(cls, config: NodeConfig, *, insecure: bool = False) -> NodeState:
        """Load and validate the table (raising DataValidationError with every problem)."""
        if insecure:
            refuse_in_production("--insecure (plaintext gRPC, no identities)")
        table = load_table(config.data, config.role)
        return cls(config, table, insecure=insecure)

    def _own_peer_key(self) -> seal.PeerKey:
        public = self.sealing_key.public_bytes
        if self.tls is None:
            return seal.PeerKey(party=self.party, cert_pem=b"", sealing_pk=public, signature=b"")
        ca_pem, cert_pem, key_pem = self.tls.read()
        self.ca_pem = ca_pem
        signature = seal.sign_sealing_key(key_pem, self.party, public)
        return seal.PeerKey(party=self.party, cert_pem=cert_pem, sealing_pk=public,
                            signature=signature)

    def verify_peer(self, peer: seal.PeerKey, *, job: str | None = None) -> bytes:
        """The peer's sealing key, once its certificate is pinned in `[trust] peers`, chains to
        our CA and signs the key; a refusal is audited (`trust.refused`) and raised."""
        if peer.party == self.party:
            raise ProtocolError("a node cannot run a protocol with itself")
        if self.ca_pem is None:
            log.warning("insecure mode: sealing key of %s is not verified", peer.party)
            if len(peer.sealing_pk) != 32:
                raise TrustError(f"sealing key of {peer.party} is not 32 bytes")
            return peer.sealing_pk
        return verify_pinned(self.party, self.config.trust.peers, self.ca_pem, peer, self.audit,
                             job=job)

    def sealer_for(self, peer_public: bytes) -> seal.Sealer:
        return seal.Sealer(self.sealing_key.private_key, peer_public)

    # PSI sessions ---------------------------------------------------------------------------
    def put_session(self, session: PsiSession) -> None:
        with self._lock:
            self._expire()
            self._sessions[(session.job_id, session.peer)] = session

    def session(self, job_id: str, peer: str) -> PsiSession:
        with self._lock:
            found = self._sessions.get((job_id, peer))
        if found is None:
            raise ProtocolError(f"no PSI session for job {job_id} with {peer}: start it first")
        return found

    def end_session(self, job_id: str, peer: str) -> None:
        with self._lock:
            self._sessions.pop((job_id, peer), None)

    def _expire(self) -> None:
        now = time.monotonic()
        for key, found in list(self._sessions.items()):
            if now - found.started > SESSION_TTL_SECONDS:
                del self._sessions[key]

    def close(self) -> None:
        self.workers.close()


"""Audit anchors at the coordinator: keep each node's signed head, deposit our own with nodes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import grpc

from common.audit import AuditLog
from common.errors import ProtocolError, TrustError
from common.tls import TlsFiles
from coordinator.nodes import NodeClients
from coordinator.store import Store
from crypto.anchor import Anchor, sign_anchor, verify_anchor
from proto.fedcredit.v1 import common_pb2, coordinator_pb2

log = logging.getLogger(__name__)

DEPOSIT_DEADLINE_S = 5.0


def anchor_to_wire(anchor: Anchor) -> common_pb2.AuditAnchor:
    return common_pb2.AuditAnchor(party=anchor.party, seq=anchor.seq,
                                  entry_hash=anchor.entry_hash, time_unix=anchor.time_unix,
                                  signature=anchor.signature, cert_pem=anchor.cert_pem)


def anchor_from_wire(msg: common_pb2.AuditAnchor) -> Anchor:
    return Anchor(party=msg.party, seq=int(msg.seq), entry_hash=msg.entry_hash,
                  time_unix=int(msg.time_unix), signature=msg.signature, cert_pem=msg.cert_pem)


class Anchoring:
    """Nodes' anchors in the store; this coordinator's head signed and sent to every node."""

    def __init__(self, name: str, store: Store, audit: AuditLog, clients: NodeClients,
                 tls: TlsFiles | None) -> None:
        self.name, self.store, self.audit, self.clients, self.tls = name, store, audit, clients, tls
        self._sent = 0
        self._lock = threading.Lock()

    def deposit(self, msg: common_pb2.AuditAnchor,
                caller: str | None) -> common_pb2.DepositAnchorReply:
        """A node's signed head: the caller must be its party, the signature its certificate's."""
        if self.tls is None:
            raise ProtocolError("audit anchors need mutual TLS (the coordinator runs insecure)")
        anchor = anchor_from_wire(msg)
        if caller != anchor.party:
            raise TrustError(f"certificate of {caller!r} cannot deposit an anchor of "
                             f"{anchor.party!r}")
        if self.store.node(anchor.party) is None:
            raise ProtocolError(f"{anchor.party!r} is not a registered node")
        if anchor.seq < 1 or len(anchor.entry_hash) != 64:
            raise ProtocolError(f"anchor of {anchor.party} names no audit entry")
        verify_anchor(self.tls.read()[0], anchor, anchor.party)
        before = self.store.add_anchor(anchor)
        if before is not None:
            self.audit.append("anchor.conflict", peer=anchor.party, purpose="audit",
                              details={"seq": anchor.seq, "anchored": before,
                                       "now": anchor.entry_hash})
            raise ProtocolError(f"audit log of {anchor.party} was rewritten: entry "
                                f"{anchor.seq} was anchored with another hash")
        log.debug("anchor of %s at entry %d", anchor.party, anchor.seq)
        return common_pb2.DepositAnchorReply()

    def list(self, party: str) -> coordinator_pb2.ListAnchorsResponse:
        return coordinator_pb2.ListAnchorsResponse(
            anchors=[anchor_to_wire(a) for a in self.store.anchors(party)])

    def deposit_own(self) -> None:
        """Sign our audit head and give it to every registered node (best effort, logged)."""
        if self.tls is None:
            return
        with self._lock:
            seq, digest = self.audit.head
            if seq == 0 or seq == self._sent:
                return
            _, cert_pem, key_pem = self.tls.read()
            wire = anchor_to_wire(sign_anchor(key_pem, cert_pem, self.name, seq, digest))
            for record in self.store.nodes():
                try:
                    self.clients.get(record).stub.DepositAnchor(wire, timeout=DEPOSIT_DEADLINE_S)
                except grpc.RpcError as err:
                    log.warning("could not deposit the audit head with %s: %s", record.party,
                                err.code().name)
            self._sent = seq

    def deposit_own_soon(self) -> None:
        threading.Thread(target=self.deposit_own, name="anchor", daemon=True).start()

    def every(self, seconds: float, stopped: Callable[[float], bool]) -> None:
        """Deposit our head every `seconds` until `stopped(seconds)` is true (a timer thread)."""
        while seconds > 0 and not stopped(seconds):
            self.deposit_own()

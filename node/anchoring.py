"""Audit anchors at a node: deposit its signed head with the coordinator; keep the coordinator's."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from common.errors import ProtocolError, TrustError
from common.tls import secure_channel
from crypto.anchor import Anchor, append_anchor, sign_anchor, verify_anchor
from proto.fedcredit.v1 import common_pb2, coordinator_pb2_grpc

if TYPE_CHECKING:
    from node.state import NodeState

log = logging.getLogger(__name__)

COORDINATOR_NAME = "coordinator"
DEPOSIT_DEADLINE_S = 5.0


class NodeAnchors:
    """This node's side of anchoring; `state.anchors`."""

    def __init__(self, state: NodeState) -> None:
        self.state = state
        self.received = Path(state.state_dir) / "anchors" / f"{COORDINATOR_NAME}.jsonl"
        self._sent = 0
        self._lock = threading.Lock()

    def deposit(self) -> bool:
        """Sign our audit head and deposit it with the coordinator; False (logged) when the
        coordinator cannot take it now. Nothing to do without TLS or without a new entry."""
        state = self.state
        if state.tls is None:
            return False
        with self._lock:
            seq, digest = state.audit.head
            if seq == 0 or seq == self._sent:
                return seq != 0
            _, cert_pem, key_pem = state.tls.read()
            anchor = sign_anchor(key_pem, cert_pem, state.party, seq, digest)
            channel = secure_channel(state.config.coordinator, state.tls, COORDINATOR_NAME)
            try:
                coordinator_pb2_grpc.CoordinatorServiceStub(channel).DepositAnchor(
                    common_pb2.AuditAnchor(party=anchor.party, seq=anchor.seq,
                                           entry_hash=anchor.entry_hash,
                                           time_unix=anchor.time_unix,
                                           signature=anchor.signature, cert_pem=anchor.cert_pem),
                    timeout=DEPOSIT_DEADLINE_S)
            except grpc.RpcError as err:
                log.warning("could not deposit the audit head (entry %d) with the coordinator: "
                            "%s: %s", seq, err.code().name, err.details())
                return False
            finally:
                channel.close()
            self._sent = seq
            log.debug("audit head (entry %d) deposited with the coordinator", seq)
            return True

    def deposit_soon(self) -> None:
        """Deposit from a thread of its own (after a job step, without delaying the reply)."""
        threading.Thread(target=self.deposit, name="anchor", daemon=True).start()

    def every(self, seconds: float, stopped: Callable[[float], bool]) -> None:
        """Deposit every `seconds` until `stopped(seconds)` is true (a timer thread)."""
        while seconds > 0 and not stopped(seconds):
            self.deposit()

    def receive(self, msg: common_pb2.AuditAnchor) -> common_pb2.DepositAnchorReply:
        """Keep the coordinator's signed head in the state folder (anchors/coordinator.jsonl)."""
        if self.state.ca_pem is None:
            raise ProtocolError("audit anchors need mutual TLS (this node runs insecure)")
        anchor = Anchor(party=msg.party, seq=int(msg.seq), entry_hash=msg.entry_hash,
                        time_unix=int(msg.time_unix), signature=msg.signature,
                        cert_pem=msg.cert_pem)
        if anchor.party != COORDINATOR_NAME:
            raise TrustError(f"an anchor of {anchor.party!r} sent as the coordinator's")
        if anchor.seq < 1 or len(anchor.entry_hash) != 64:
            raise ProtocolError("the coordinator's anchor names no audit entry")
        verify_anchor(self.state.ca_pem, anchor, COORDINATOR_NAME)
        with self._lock:
            append_anchor(self.received, anchor)
        return common_pb2.DepositAnchorReply()

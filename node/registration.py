"""The node's record at the coordinator: register with progress and named causes, then a heartbeat
that registers again when the coordinator lost the record and brings it the node's data snapshot
status (at once when a reload changed it)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import grpc

from common.errors import FedcreditError, PeerUnavailable, ProtocolError, TrustError
from common.probe import Diagnosis, diagnose
from common.tls import secure_channel
from node.state import NodeState
from proto.fedcredit.v1 import common_pb2, coordinator_pb2, coordinator_pb2_grpc

log = logging.getLogger(__name__)

COORDINATOR_NAME = "coordinator"
REGISTER_DEADLINE_S = 10.0
FINAL_ATTEMPTS = 3  # a cause retrying cannot fix (DNS, trust) fails after this many attempts
TRUST_KINDS = ("untrusted", "rejected", "name")


class Registration:
    """Registers ``info()`` (made anew for every call: the snapshot status changes) at
    ``endpoint`` with the coordinator named in the node's config."""

    def __init__(self, state: NodeState, info: Callable[[], common_pb2.NodeInfo], endpoint: str,
                 stop: threading.Event, source: str = "the node config") -> None:
        self.state = state
        self.address = state.config.coordinator
        self.source = source
        self.stop = stop
        self.info = info
        self.endpoint = endpoint
        self.registered_at = 0

    @property
    def request(self) -> coordinator_pb2.RegisterNodeRequest:
        return coordinator_pb2.RegisterNodeRequest(endpoint=self.endpoint, info=self.info())

    def _call(self) -> coordinator_pb2.RegisterNodeResponse:
        channel = secure_channel(self.address, self.state.tls, COORDINATOR_NAME)
        try:
            stub = coordinator_pb2_grpc.CoordinatorServiceStub(channel)
            reply: coordinator_pb2.RegisterNodeResponse = stub.RegisterNode(
                self.request, timeout=REGISTER_DEADLINE_S)
            return reply
        finally:
            channel.close()

    def _refused(self, err: grpc.RpcError) -> FedcreditError | None:
        """Our error for a refusal the coordinator sent (no retry helps), or None."""
        text = f"node {self.state.party}: the coordinator refused registration: {err.details()}"
        if err.code() == grpc.StatusCode.PERMISSION_DENIED:
            return TrustError(text)
        if err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
            return ProtocolError(text)
        return None

    def why(self, err: grpc.RpcError) -> Diagnosis:
        """The named cause of a failed call (the probe's, else gRPC's status)."""
        found = diagnose(self.address, self.state.tls, COORDINATOR_NAME)
        if found.kind != "ok":
            return found
        return Diagnosis("grpc", f"{err.code().name}: {err.details()}")

    def failure(self, cause: Diagnosis) -> FedcreditError:
        """The one-line error for a cause retrying cannot fix, naming the setting to change."""
        text = (f'node {self.state.party}: cannot register at coordinator = "{self.address}" '
                f"({self.source}): {cause.reason}")
        return TrustError(text) if cause.kind in TRUST_KINDS else PeerUnavailable(text)

    def register(self, attempts: int = 60) -> bool:
        """Register, retrying with backoff while the coordinator is not up; log every retry.
        False when stopped first; raises our error when registration cannot succeed."""
        delay = 0.2
        finals = 0
        cause = Diagnosis("none", "no attempt made")
        for attempt in range(1, attempts + 1):
            if self.stop.is_set():
                return False
            try:
                reply = self._call()
            except grpc.RpcError as err:
                refused = self._refused(err)
                if refused is not None:
                    raise refused from None
                cause = self.why(err)
                finals = finals + 1 if cause.final else 0
                if finals >= FINAL_ATTEMPTS:
                    raise self.failure(cause) from None
                log.warning("waiting for coordinator %s (%d/%d): %s", self.address, attempt,
                            attempts, cause.reason)
                self.stop.wait(delay)
                delay = min(delay * 1.5, 5.0)
                continue
            self._registered(reply)
            log.info("registered with the coordinator at %s as %s", self.address,
                     self.state.party)
            return True
        raise PeerUnavailable(f'node {self.state.party}: coordinator = "{self.address}" '
                              f"({self.source}) did not answer after {attempts} attempts: "
                              f"{cause.reason}")

    def _registered(self, reply: coordinator_pb2.RegisterNodeResponse) -> None:
        self.registered_at = int(reply.registered_at_unix)
        self.state.audit.append("node.register", peer=COORDINATOR_NAME, purpose="registration",
                                rows=self.state.table.rows)

    def keep_registered(self, interval: float) -> None:
        """Until stopped: every ``interval`` s, and at once when the data snapshot status
        changed, register again (a no-op for a coordinator that knows us, but for the status);
        log once when the coordinator is lost, back, or had lost our record."""
        lost = False
        changed = self.state.live.changed
        while True:
            changed.wait(interval)
            changed.clear()
            if self.stop.is_set():
                return
            try:
                reply = self._call()
            except grpc.RpcError as err:
                if not lost:
                    refused = self._refused(err)
                    reason = str(refused) if refused is not None else self.why(err).reason
                    log.warning("lost the coordinator at %s: %s; trying again every %.0fs",
                                self.address, reason, interval)
                lost = True
                continue
            if lost:
                log.info("the coordinator at %s answers again", self.address)
                lost = False
            if int(reply.registered_at_unix) != self.registered_at:
                self._registered(reply)
                log.warning("the coordinator at %s had no record of this node (restarted on "
                            "a new state folder?); registered again as %s", self.address,
                            self.state.party)

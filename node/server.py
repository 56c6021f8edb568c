"""The node's gRPC server: thin NodeService servicer, health, registration with the coordinator."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc

from common.errors import PeerUnavailable, ProtocolError, TrustError
from common.parts import read_step, write_step
from common.rpc import rpc_method
from common.tls import new_server, secure_channel
from node import psi_handlers
from node.scoring.feature import FeatureScoring
from node.state import NodeState
from node.steps import StepHandler
from proto.fedcredit.v1 import common_pb2, coordinator_pb2, coordinator_pb2_grpc, node_pb2_grpc

log = logging.getLogger(__name__)

VERSION = "0.1.0"
COORDINATOR_NAME = "coordinator"
REGISTER_DEADLINE_S = 10.0


def _coordinator_only(servicer: NodeServicer) -> set[str] | None:
    return None if servicer.state.insecure else {COORDINATOR_NAME}


class NodeServicer(node_pb2_grpc.NodeServiceServicer):
    """Validates, calls one handler, maps errors to a status (in common.rpc)."""

    def __init__(self, state: NodeState) -> None:
        self.state = state
        self.steps = StepHandler(state)
        self.scoring = FeatureScoring(state)

    @rpc_method("Node.Describe", log, _coordinator_only)
    def Describe(self, request: Any, context: grpc.ServicerContext) -> common_pb2.NodeInfo:
        return node_info(self.state)

    @rpc_method("Node.PsiBlindOwn", log, _coordinator_only)
    def PsiBlindOwn(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        yield from psi_handlers.blind_own(request, self.state)

    @rpc_method("Node.PsiDoubleBlind", log, _coordinator_only)
    def PsiDoubleBlind(self, request_iterator: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        yield from psi_handlers.double_blind(request_iterator, self.state)

    @rpc_method("Node.PsiIntersect", log, _coordinator_only)
    def PsiIntersect(self, request_iterator: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        yield from psi_handlers.intersect(request_iterator, self.state)

    @rpc_method("Node.PsiAccept", log, _coordinator_only)
    def PsiAccept(self, request_iterator: Any, context: grpc.ServicerContext) -> Any:
        return psi_handlers.accept(request_iterator, self.state)

    @rpc_method("Node.RunStep", log, _coordinator_only)
    def RunStep(self, request_iterator: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        header, inputs = read_step(request_iterator)
        yield from write_step(self.steps.run(header, inputs))

    @rpc_method("Node.ScoreSetup", log, _coordinator_only)
    def ScoreSetup(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.scoring.setup(request)

    @rpc_method("Node.ScorePartial", log, _coordinator_only)
    def ScorePartial(self, request_iterator: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        yield from self.scoring.partial(request_iterator)


def node_info(state: NodeState) -> common_pb2.NodeInfo:
    """Identity, role, rows and schema of this node; never a value from its table."""
    table = state.table
    data = state.config.data
    schema = common_pb2.TableSchema(
        id_column=data.id_column, id_format=data.id_format, label_column=data.label_column or "",
        features=[common_pb2.FeatureSchema(name=name, dtype="float64", missing_share=share)
                  for name, share in zip(table.features, table.missing_shares(), strict=True)],
    )
    key = state.peer_key
    return common_pb2.NodeInfo(
        party=state.party,
        role=common_pb2.ROLE_LABEL if state.role == "label" else common_pb2.ROLE_FEATURE,
        rows=table.rows, schema=schema, version=VERSION,
        key=common_pb2.PeerKey(party=key.party, cert_pem=key.cert_pem,
                               sealing_public_key=key.sealing_pk, signature=key.signature),
    )


def build_server(state: NodeState, listen: str, workers: int = 8) -> tuple[grpc.Server, int]:
    """The node's server (not yet started) and its port."""
    servicer = NodeServicer(state)
    return new_server(
        lambda server: node_pb2_grpc.add_NodeServiceServicer_to_server(servicer, server),
        "fedcredit.v1.NodeService", listen, state.tls, workers=workers)


def register(state: NodeState, endpoint: str, *, attempts: int = 60,
             stop: threading.Event | None = None) -> None:
    """Announce this node to the coordinator, retrying with backoff while it is not up yet."""
    request = coordinator_pb2.RegisterNodeRequest(endpoint=endpoint, info=node_info(state))
    delay = 0.2
    last: Exception | None = None
    for _ in range(attempts):
        if stop is not None and stop.is_set():
            return
        channel = secure_channel(state.config.coordinator, state.tls, COORDINATOR_NAME)
        try:
            stub = coordinator_pb2_grpc.CoordinatorServiceStub(channel)
            stub.RegisterNode(request, timeout=REGISTER_DEADLINE_S)
            log.info("registered with the coordinator at %s as %s", state.config.coordinator,
                     state.party)
            state.audit.append("node.register", peer=COORDINATOR_NAME, purpose="registration",
                               rows=state.table.rows)
            return
        except grpc.RpcError as err:
            last = err
            if err.code() == grpc.StatusCode.PERMISSION_DENIED:
                raise TrustError(f"the coordinator refused registration: {err.details()}") \
                    from err
            if err.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                              grpc.StatusCode.FAILED_PRECONDITION):
                raise ProtocolError(f"the coordinator refused registration: {err.details()}") \
                    from err
        finally:
            channel.close()
        time.sleep(delay)
        delay = min(delay * 1.5, 5.0)
    raise PeerUnavailable(f"coordinator {state.config.coordinator} unreachable: {last}")


def serve(state: NodeState) -> None:
    """Serve until SIGTERM or SIGINT; register with the coordinator once listening."""
    listen = state.config.listen
    server, port = build_server(state, listen)
    server.start()
    host = listen.rsplit(":", 1)[0]
    endpoint = state.config.advertise or f"{host}:{port}"
    log.info("node %s (%s, %d rows) listening on %s", state.party, state.role, state.table.rows,
             endpoint)
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        register(state, endpoint, stop=stop)
        stop.wait()
    finally:
        log.info("node %s shutting down", state.party)
        server.stop(grace=2).wait()
        state.close()

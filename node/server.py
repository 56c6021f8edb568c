"""The node's gRPC server: thin NodeService servicer, health, and the serve loop."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

import grpc

from common.parts import read_step, write_step
from common.rpc import rpc_method
from common.tls import new_server
from node import psi_handlers
from node.data_handlers import reload_data, snapshot_status
from node.monitoring.alerts import DataAlerts
from node.registration import COORDINATOR_NAME, Registration
from node.scoring.feature import FeatureScoring
from node.state import NodeState
from node.steps import StepHandler
from proto.fedcredit.v1 import common_pb2, node_pb2_grpc

log = logging.getLogger(__name__)

VERSION = "0.1.0"


def _coordinator_only(servicer: NodeServicer) -> set[str] | None:
    return None if servicer.state.insecure else {COORDINATOR_NAME}


class NodeServicer(node_pb2_grpc.NodeServiceServicer):
    """Validates, calls one handler, maps errors to a status (in common.rpc)."""

    def __init__(self, state: NodeState) -> None:
        self.state = state
        self.steps = StepHandler(state)
        self.scoring = FeatureScoring(state)
        self.data_alerts = DataAlerts(self.scoring)

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
        limits = self.state.config.limits
        header, inputs = read_step(request_iterator, max_bytes=limits.max_step_bytes,
                                   max_parts=limits.max_step_parts)
        yield from write_step(self.steps.run(header, inputs))

    @rpc_method("Node.ScoreSetup", log, _coordinator_only)
    def ScoreSetup(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.scoring.setup(request)

    @rpc_method("Node.ScorePartial", log, _coordinator_only)
    def ScorePartial(self, request_iterator: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        yield from self.scoring.partial(request_iterator)

    @rpc_method("Node.DataAlertPartial", log, _coordinator_only)
    def DataAlertPartial(self, request_iterator: Any,
                         context: grpc.ServicerContext) -> Iterator[Any]:
        yield from self.data_alerts.partial(request_iterator)

    @rpc_method("Node.DepositAnchor", log, _coordinator_only)
    def DepositAnchor(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.state.anchors.receive(request)

    @rpc_method("Node.ReloadData", log, _coordinator_only)
    def ReloadData(self, request: Any, context: grpc.ServicerContext) -> Any:
        return reload_data(request, self.state)


def node_info(state: NodeState) -> common_pb2.NodeInfo:
    """Identity, role, rows, schema and data snapshot of this node; never a value from its
    table."""
    table = state.table
    data = state.config.data
    schema = common_pb2.TableSchema(
        id_column=data.id_column, id_format=data.id_format, label_column=data.label_column or "",
        features=[common_pb2.FeatureSchema(name=name, dtype="float64", missing_share=share)
                  for name, share in zip(table.features, table.missing_shares(), strict=True)],
        unlabelled_rows=table.unlabelled_rows,
    )
    key = state.peer_key
    return common_pb2.NodeInfo(
        party=state.party,
        role=common_pb2.ROLE_LABEL if state.role == "label" else common_pb2.ROLE_FEATURE,
        rows=table.rows, schema=schema, version=VERSION, snapshot=snapshot_status(state.live),
        key=common_pb2.PeerKey(party=key.party, cert_pem=key.cert_pem,
                               sealing_public_key=key.sealing_pk, signature=key.signature),
    )


def build_server(state: NodeState, listen: str, workers: int = 8,
                 source: str = "the node config") -> tuple[grpc.Server, int]:
    """The node's server (not yet started) and its port; ListenError names the setting."""
    servicer = NodeServicer(state)
    return new_server(
        lambda server: node_pb2_grpc.add_NodeServiceServicer_to_server(servicer, server),
        "fedcredit.v1.NodeService", listen, state.tls, workers=workers,
        who=f"node {state.party}", setting=f"listen in {source}", limits=state.config.limits)


def serve(state: NodeState, source: str = "the node config") -> None:
    """Serve until SIGTERM or SIGINT; register with the coordinator once listening, then keep
    the registration alive. ``source`` names the config file in error messages."""
    listen = state.config.listen
    server, port = build_server(state, listen, source=source)
    server.start()
    host = listen.rsplit(":", 1)[0]
    endpoint = state.config.advertise or f"{host}:{port}"
    log.info("node %s (%s, %d rows) listening on %s", state.party, state.role, state.table.rows,
             endpoint)
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()
        state.live.changed.set()  # wakes the heartbeat at once

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    threading.Thread(target=state.anchors.every, args=(state.config.anchor_seconds, stop.wait),
                     name="anchor-timer", daemon=True).start()
    threading.Thread(target=state.live.every, args=(state.config.data.refresh_seconds, stop.wait),
                     name="data-refresh", daemon=True).start()
    try:
        registration = Registration(state, lambda: node_info(state), endpoint, stop, source)
        if registration.register():
            registration.keep_registered(state.config.heartbeat_seconds)
    finally:
        log.info("node %s shutting down", state.party)
        server.stop(grace=2).wait()
        state.anchors.deposit()  # the head at shutdown, after the last entry
        state.close()

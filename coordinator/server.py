"""The coordinator's gRPC server: a thin CoordinatorService servicer and the health service."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import grpc

from common.rpc import rpc_method
from common.tls import new_server, peer_party
from coordinator.data_alerts import data_alerts
from coordinator.service import Coordinator
from proto.fedcredit.v1 import coordinator_pb2_grpc

log = logging.getLogger(__name__)


def _any_certified(servicer: CoordinatorServicer) -> None:
    return None  # every caller already holds a certificate of our CA (mutual TLS)


def _operators(servicer: CoordinatorServicer) -> set[str] | None:
    core = servicer.core
    return None if core.insecure else set(core.config.operators)


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServiceServicer):
    """Validates, calls the Coordinator, maps errors to a status (in common.rpc)."""

    def __init__(self, core: Coordinator) -> None:
        self.core = core

    @rpc_method("Coordinator.RegisterNode", log, _any_certified)
    def RegisterNode(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.core.register(request, peer_party(context))

    @rpc_method("Coordinator.ListNodes", log, _operators)
    def ListNodes(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.core.list_nodes()

    @rpc_method("Coordinator.Align", log, _operators)
    def Align(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.core.align(request, peer_party(context))

    @rpc_method("Coordinator.ListJobs", log, _operators)
    def ListJobs(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.core.list_jobs()

    @rpc_method("Coordinator.GetJob", log, _operators)
    def GetJob(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.core.get_job(request.job_id)

    @rpc_method("Coordinator.Train", log, _operators)
    def Train(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.core.train(request, peer_party(context))

    @rpc_method("Coordinator.ResumeJob", log, _operators)
    def ResumeJob(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.core.resume_job(request.job_id)

    @rpc_method("Coordinator.CancelJob", log, _operators)
    def CancelJob(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.core.cancel_job(request.job_id, peer_party(context))

    @rpc_method("Coordinator.DeleteJob", log, _operators)
    def DeleteJob(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.core.delete_job(request, peer_party(context))

    @rpc_method("Coordinator.ListModels", log, _operators)
    def ListModels(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.core.list_models()

    @rpc_method("Coordinator.ResolveScoringModel", log, _any_certified)
    def ResolveScoringModel(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.core.scoring.resolve(request, peer_party(context), self.core.insecure)

    @rpc_method("Coordinator.ScoreSetup", log, _any_certified)
    def ScoreSetup(self, request_iterator: Any, context: grpc.ServicerContext) -> Any:
        return self.core.scoring.setup(request_iterator, peer_party(context), self.core.insecure)

    @rpc_method("Coordinator.Score", log, _any_certified)
    def Score(self, request_iterator: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        yield from self.core.scoring.score(request_iterator, peer_party(context),
                                           self.core.insecure)

    @rpc_method("Coordinator.DataAlerts", log, _any_certified)
    def DataAlerts(self, request_iterator: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        yield from data_alerts(self.core.scoring, request_iterator, peer_party(context),
                               self.core.insecure)

    @rpc_method("Coordinator.EvaluatePseudonyms", log, _any_certified)
    def EvaluatePseudonyms(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.core.scoring.evaluate(request, peer_party(context), self.core.insecure)


    @rpc_method("Coordinator.DepositAnchor", log, _any_certified)
    def DepositAnchor(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.core.anchoring.deposit(request, peer_party(context))

    @rpc_method("Coordinator.ReloadNode", log, _operators)
    def ReloadNode(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.core.reload_node(request)

    @rpc_method("Coordinator.ListAnchors", log, _operators)
    def ListAnchors(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.core.anchoring.list(request.party)


def build_server(core: Coordinator, listen: str, *, workers: int = 16,
                 interceptors: Sequence[grpc.ServerInterceptor] = (),
                 source: str = "the coordinator config") -> tuple[grpc.Server, int]:
    """The coordinator's server (not yet started) and its port; ListenError names the setting."""
    servicer = CoordinatorServicer(core)
    return new_server(
        lambda server: coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server(
            servicer, server),
        "fedcredit.v1.CoordinatorService", listen, core.tls, workers=workers,
        interceptors=interceptors, who="coordinator", setting=f"listen in {source}",
        limits=core.config.limits)


def serve(core: Coordinator, source: str = "the coordinator config") -> None:
    """Serve until SIGTERM or SIGINT; ``source`` names the config file in error messages."""
    server, port = build_server(core, core.config.listen, source=source)
    server.start()
    log.info("coordinator listening on %s (port %d)%s", core.config.listen, port,
             " INSECURE" if core.insecure else " with mutual TLS")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=core.anchoring.every, args=(core.config.anchor_seconds, stop.wait),
                     name="anchor-timer", daemon=True).start()
    try:
        stop.wait()
    finally:
        server.stop(grace=2).wait()
        core.close()

"""The decision service's gRPC API (`fedcredit.v1.DecisionService`), beside its HTTP/JSON one.

A thin servicer over the same `DecisionService`: the request becomes the HTTP API's pydantic
`DecisionRequest` (a bad field is INVALID_ARGUMENT naming it), the answer carries the key figures
typed and the whole decision as JSON. Errors map to a status in `common.rpc`: a feature node's cap
is RESOURCE_EXHAUSTED naming the node and the cap (retry-after for a daily cap), as is an
enterprise every feature node refused alone (its stored decision's id in the trailing metadata).
It listens on the bank's internal network like the HTTP API: no client certificates.
"""

from __future__ import annotations

import logging
import math
from concurrent import futures
from typing import Any

import grpc
from pydantic import ValidationError

from common.errors import CapExceeded, DataValidationError, describe_validation
from common.errors import seconds_to_next_utc_day as to_next_day
from common.rpc import rpc_method
from node.decisions.schema import DecisionOut, DecisionRequest
from node.decisions.service import DecisionService
from proto.fedcredit.v1 import decisions_pb2, decisions_pb2_grpc

log = logging.getLogger("fedcredit.decisions")

DECISION_ID = "fedcredit-decision-id"
"""Trailing metadata of a RESOURCE_EXHAUSTED answer for an enterprise refused alone."""


def _request(message: decisions_pb2.DecideRequest) -> DecisionRequest:
    features: dict[str, float | None] | None = None
    if message.features or message.missing_features:
        features = {**dict(message.features), **dict.fromkeys(message.missing_features)}
    body: dict[str, Any] = {
        "enterprise_id": message.enterprise_id,
        "consent": {"reference": message.consent_reference,
                    "expires_at": message.consent_expires_at},
        "features": features}
    if message.purpose:
        body["purpose"] = message.purpose
    try:
        return DecisionRequest.model_validate(body)
    except ValidationError as err:
        raise DataValidationError(describe_validation(err, "decision request")) from err


def _reply(out: DecisionOut) -> decisions_pb2.DecisionReply:
    def number(value: float | None) -> float:
        return math.nan if value is None else value

    return decisions_pb2.DecisionReply(
        decision_id=out.decision_id, outcome=out.outcome, grade=out.grade or "",
        pd=number(out.pd), score=number(out.score), credit_line=number(out.credit_line),
        decision_json=out.model_dump_json())


def decide(message: decisions_pb2.DecideRequest,
           service: DecisionService) -> decisions_pb2.DecisionReply:
    """One decision; an enterprise refused alone is stored, then told as its cap."""
    out = service.decide(_request(message))
    if out.outcome == "refused":
        raise CapExceeded(service.refusal_message(), party="every feature node",
                          cap="daily_budget or max_model_versions", retry_after_s=to_next_day(),
                          facts=((DECISION_ID, out.decision_id),))
    return _reply(out)


class DecisionServicer(decisions_pb2_grpc.DecisionServiceServicer):
    """Logs one line per call, calls one handler, maps errors to a status (in common.rpc)."""

    def __init__(self, service: DecisionService) -> None:
        self.service = service

    @rpc_method("Decisions.Decide", log, lambda _: None)
    def Decide(self, request: Any, context: grpc.ServicerContext) -> Any:
        return decide(request, self.service)

    @rpc_method("Decisions.GetDecision", log, lambda _: None)
    def GetDecision(self, request: Any, context: grpc.ServicerContext) -> Any:
        found = self.service.get(request.decision_id)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such decision")
        assert found is not None
        return _reply(found)


def serve_grpc(service: DecisionService, listen: str, workers: int = 32) -> grpc.Server:
    """Start the gRPC API on `listen` (host:port, plaintext on the bank's internal network)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers,
                                                    thread_name_prefix="decisions-grpc"))
    decisions_pb2_grpc.add_DecisionServiceServicer_to_server(DecisionServicer(service), server)
    if server.add_insecure_port(listen) == 0:
        raise DataValidationError(f"--grpc-listen {listen}: cannot listen there")
    server.start()
    return server

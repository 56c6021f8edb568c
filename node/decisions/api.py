"""The decision service's HTTP/JSON API (FastAPI; OpenAPI page at /docs, schema at /openapi.json).

POST /v1/decisions decides on one enterprise; GET /v1/decisions/{id} returns a stored decision;
GET /v1/strategy/hits counts each admission rule's hits; POST /v1/strategy/dry-run replays a
candidate strategy over stored decisions.
A bad field is a 422 naming it (pydantic's `loc`); a refusal by a feature node's `[scoring]` cap
a 429 naming the node and the cap, with Retry-After where the cap is a daily one (requests per
day; an enterprise's daily budget or model versions: every feature node refused it, and the
decision is stored with outcome "refused" and its id in the answer); any other refusal by the
network a 409 with its reason, an unreachable network a 503. Request bodies are size-checked
before they are parsed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from common.errors import CapExceeded, PeerUnavailable, ProtocolError, seconds_to_next_utc_day
from node.decisions.schema import DecisionOut, DecisionRequest, FieldError
from node.decisions.service import DecisionService
from node.decisions.strategy import Strategy

log = logging.getLogger("fedcredit.decisions")

MAX_BODY_BYTES = 64 * 1024


def create_app(service: DecisionService) -> FastAPI:
    """The API over one running service (its scorer already set up)."""
    app = FastAPI(title="fedcredit decision service", version="1",
                  description="Joint credit decisions at the bank: PD, score, grade, credit "
                              "line and reason codes, each stored to be explained later.")

    @app.middleware("http")
    async def limit_body(request: Request,
                         call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return JSONResponse({"detail": f"a request body is at most {MAX_BODY_BYTES} bytes"},
                                status_code=413)
        return await call_next(request)

    @app.exception_handler(FieldError)
    async def field_error(_: Request, err: FieldError) -> JSONResponse:
        return JSONResponse({"detail": [{"loc": list(err.loc), "msg": err.message,
                                         "type": "value_error"}]}, status_code=422)

    @app.post("/v1/decisions", status_code=201, response_model=DecisionOut)
    def decide(request: DecisionRequest) -> DecisionOut:
        """Decide on one enterprise (a joint scoring round with the network)."""
        try:
            out = service.decide(request)
        except CapExceeded as err:  # a node's (or the coordinator's) own cap: not our fault
            log.warning("[decisions] %s's cap %s refused a request", err.party, err.cap)
            raise HTTPException(429, str(err), headers=_retry_after(err.retry_after_s)) from err
        except PeerUnavailable as err:
            raise HTTPException(503, str(err)) from err
        except ProtocolError as err:
            raise HTTPException(409, str(err)) from err
        except Exception as err:  # grpc errors from the network leg
            details = getattr(err, "details", None)
            if callable(details):
                log.warning("[decisions] the network refused a request: %s", details())
                raise HTTPException(502, f"the network refused: {details()}") from err
            raise
        log.info("[decisions] %s: %s", out.decision_id, out.outcome)
        if out.outcome == "refused":  # stored, and told as what it is: a cap, for a while
            return JSONResponse(  # type: ignore[return-value]
                {"detail": service.refusal_message(), "decision_id": out.decision_id},
                status_code=429, headers=_retry_after(seconds_to_next_utc_day()))
        return out

    @app.get("/v1/decisions/{decision_id}", response_model=DecisionOut)
    def get_decision(decision_id: str) -> DecisionOut:
        """A stored decision with the inputs, model, policy version and consent behind it."""
        found = service.get(decision_id)
        if found is None:
            raise HTTPException(404, "no such decision")
        return found

    @app.get("/v1/strategy/hits")
    def rule_hits() -> dict[str, dict[str, int]]:
        """Hits of each admission rule, by strategy version."""
        return service.store.rule_hits()

    @app.post("/v1/strategy/dry-run")
    def strategy_dry_run(strategy: Strategy, since: str = "") -> dict[str, Any]:
        """Replay a candidate strategy over stored decisions: what would change (nothing is
        stored or changed)."""
        return service.dry_run(strategy, since)

    @app.get("/healthz")
    def health() -> dict[str, str]:
        return {"status": "serving", "model_id": service.model.model_id}

    return app


def _retry_after(seconds: int | None) -> dict[str, str] | None:
    return None if seconds is None else {"Retry-After": str(seconds)}

"""One place that maps our exceptions to gRPC status codes and checks who is calling."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Collection
from typing import Any, TypeVar

import grpc

from common.errors import (
    CapExceeded,
    DataValidationError,
    FedcreditError,
    LimitExceeded,
    PeerUnavailable,
    ProtocolError,
    TrustError,
)
from common.tls import peer_party

F = TypeVar("F", bound=Callable[..., Any])

STATUS_OF: dict[type[FedcreditError], grpc.StatusCode] = {
    CapExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,  # before ProtocolError, its base
    LimitExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,  # before ProtocolError, its base
    ProtocolError: grpc.StatusCode.FAILED_PRECONDITION,
    TrustError: grpc.StatusCode.PERMISSION_DENIED,
    DataValidationError: grpc.StatusCode.INVALID_ARGUMENT,
    PeerUnavailable: grpc.StatusCode.UNAVAILABLE,
}

"""Our exceptions as the status a servicer aborts with (anything else: INTERNAL)."""

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
"""Statuses meaning the peer did not answer in time: a retry may help (PeerUnavailable's)."""

CAP_PARTY, CAP_NAME, CAP_RETRY_AFTER = "fedcredit-cap-party", "fedcredit-cap", "retry-after"
"""Trailing metadata of a RESOURCE_EXHAUSTED status from a `CapExceeded`: who refused, by
which cap, and in how many seconds it renews (absent when waiting would not help)."""


def cap_metadata(err: CapExceeded) -> tuple[tuple[str, str], ...]:
    """A cap refusal's facts as trailing metadata."""
    found = [(CAP_PARTY, err.party), (CAP_NAME, err.cap)]
    if err.retry_after_s is not None:
        found.append((CAP_RETRY_AFTER, str(err.retry_after_s)))
    return (*found, *err.facts)


def cap_exceeded(err: grpc.RpcError, message: str, default_party: str = "") -> CapExceeded:
    """A peer's RESOURCE_EXHAUSTED status as a `CapExceeded`, with the facts its trailing
    metadata names (`default_party` where it names none)."""
    facts = dict(err.trailing_metadata() or ()) if hasattr(err, "trailing_metadata") else {}
    retry = str(facts.get(CAP_RETRY_AFTER, ""))
    return CapExceeded(message, party=str(facts.get(CAP_PARTY, "")) or default_party,
                       cap=str(facts.get(CAP_NAME, "")),
                       retry_after_s=int(retry) if retry.isdigit() else None)


def _status(err: FedcreditError) -> grpc.StatusCode:
    for kind, code in STATUS_OF.items():
        if isinstance(err, kind):
            return code
    return grpc.StatusCode.INTERNAL


def rpc_method(tag: str, log: logging.Logger,
               allowed: Callable[[Any], Collection[str] | None]) -> Callable[[F], F]:
    """Wrap a servicer method: check the caller's certificate name, map errors to a status.

    `allowed(servicer)` returns the party names allowed to call, or None to skip the check
    (only in the explicit insecure development mode).
    """

    def decorate(method: F) -> F:
        def check_caller(self: Any, context: grpc.ServicerContext) -> str | None:
            names = allowed(self)
            caller = peer_party(context)
            if names is not None and caller not in names:
                log.warning("[%s] refused caller %s", tag, caller)
                context.abort(grpc.StatusCode.PERMISSION_DENIED,
                              f"{tag}: caller {caller!r} is not allowed")
            return caller

        def fail(context: grpc.ServicerContext, err: Exception) -> None:
            if isinstance(err, FedcreditError):
                log.warning("[%s] %s", tag, err)
                if isinstance(err, CapExceeded):
                    context.set_trailing_metadata(cap_metadata(err))
                context.abort(_status(err), str(err))
            log.exception("[%s] internal error", tag)
            context.abort(grpc.StatusCode.INTERNAL, f"{tag}: internal error: {type(err).__name__}")

        if inspect.isgeneratorfunction(method):
            @functools.wraps(method)
            def stream(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
                check_caller(self, context)
                try:
                    yield from method(self, request, context)
                except Exception as err:  # noqa: BLE001 - mapped to a status in one place
                    if isinstance(err, grpc.RpcError):
                        raise
                    fail(context, err)
            return stream  # type: ignore[return-value]

        @functools.wraps(method)
        def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            check_caller(self, context)
            try:
                return method(self, request, context)
            except Exception as err:  # noqa: BLE001 - mapped to a status in one place
                if isinstance(err, grpc.RpcError):
                    raise
                fail(context, err)
        return unary  # type: ignore[return-value]

    return decorate

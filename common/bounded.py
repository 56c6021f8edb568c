"""Incoming streams counted message by message and cut off at their limit, before buffering."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import grpc

from common.errors import LimitExceeded
from common.limits import WireLimits

M = TypeVar("M")


def bounded(messages: Iterable[M], limits: WireLimits, what: str) -> Iterator[M]:
    """The messages of a stream, raising LimitExceeded as soon as their count or total size
    passes `limits` (a message is at most gRPC's message limit, so at most that much more than
    the limit is ever held)."""
    total = 0
    for count, message in enumerate(messages, start=1):
        if count > limits.max_stream_messages:
            raise LimitExceeded(f"{what}: more than {limits.max_stream_messages} messages "
                                f"(limits.max_stream_messages)")
        size = message.ByteSize() if hasattr(message, "ByteSize") else 0
        total += size
        if total > limits.max_stream_bytes:
            raise LimitExceeded(f"{what}: stream passes {limits.max_stream_bytes} bytes "
                                f"(limits.max_stream_bytes)")
        yield message


class StreamLimitInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Wraps the request iterator of every client-streaming method in `bounded`."""

    def __init__(self, limits: WireLimits) -> None:
        self.limits = limits

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or not handler.request_streaming:
            return handler
        method, limits = details.method, self.limits

        def wrap(inner: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
            return lambda requests, context: inner(bounded(requests, limits, method), context)

        if handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                wrap(handler.stream_stream), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return grpc.stream_unary_rpc_method_handler(
            wrap(handler.stream_unary), request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)

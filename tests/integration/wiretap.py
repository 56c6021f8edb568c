"""Record every message that crosses the coordinator, in both directions, as serialized bytes."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.message import Message


class WireTap:
    """A thread-safe list of (method, direction, serialized bytes)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, bytes]] = []
        self.messages: list[tuple[str, str, Message]] = []
        self._lock = threading.Lock()

    def add(self, method: str, direction: str, message: Any) -> None:
        if isinstance(message, Message):
            with self._lock:
                self.records.append((method, direction, message.SerializeToString()))
                self.messages.append((method, direction, message))

    def clear(self) -> None:
        with self._lock:
            self.records.clear()
            self.messages.clear()

    def blob(self) -> bytes:
        with self._lock:
            return b"\x00".join(r[2] for r in self.records)

    def methods(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self.records}

    def fields(self) -> list[tuple[str, str, str, bytes]]:
        """(method, direction, field, bytes) of every message's payload: the field set in its
        `body` oneof (a sub-message serialized), a signed set-up ("setup", its contexts) or
        pseudonym points ("points")."""
        out = []
        with self._lock:
            messages = list(self.messages)
        for method, direction, message in messages:
            oneofs = {o.name for o in message.DESCRIPTOR.oneofs}
            name = message.WhichOneof("body") if "body" in oneofs else None
            if name is None and message.DESCRIPTOR.fields_by_name.get("setup_signature"):
                out.append((method, direction, "setup", message.context + message.model_context))
                continue
            if name is None and message.DESCRIPTOR.fields_by_name.get("points"):
                out.append((method, direction, "points", message.points))
                continue
            if name is None:
                continue
            value = getattr(message, name)
            data = value if isinstance(value, bytes) else value.SerializeToString()
            out.append((method, direction, name, data))
        return out

    def _tap_iter(self, method: str, direction: str, items: Iterator[Any]) -> Iterator[Any]:
        for item in items:
            self.add(method, direction, item)
            yield item

    # client side: the coordinator calling nodes -----------------------------------------------
    def client_interceptor(self) -> _ClientTap:
        return _ClientTap(self)

    # server side: nodes and the CLI calling the coordinator -----------------------------------
    def server_interceptor(self) -> _ServerTap:
        return _ServerTap(self)


class _ClientTap(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                 grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, tap: WireTap) -> None:
        self.tap = tap

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any,
                              request: Any) -> Any:
        self.tap.add(details.method, "request", request)
        outcome = continuation(details, request)
        with contextlib.suppress(grpc.RpcError):
            self.tap.add(details.method, "response", outcome.result())
        return outcome

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any,
                               request: Any) -> Any:
        self.tap.add(details.method, "request", request)
        return self.tap._tap_iter(details.method, "response", continuation(details, request))

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any,
                               request_iterator: Any) -> Any:
        outcome = continuation(details, self.tap._tap_iter(details.method, "request",
                                                           request_iterator))
        with contextlib.suppress(grpc.RpcError):
            self.tap.add(details.method, "response", outcome.result())
        return outcome

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any,
                                request_iterator: Any) -> Any:
        responses = continuation(details, self.tap._tap_iter(details.method, "request",
                                                             request_iterator))
        return self.tap._tap_iter(details.method, "response", responses)


class _ServerTap(grpc.ServerInterceptor):
    """Records what nodes and the CLI send the coordinator, unary and streamed alike."""

    def __init__(self, tap: WireTap) -> None:
        self.tap = tap

    def intercept_service(self, continuation: Callable[..., Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return handler
        method, tap = details.method, self.tap
        serializers = {"request_deserializer": handler.request_deserializer,
                       "response_serializer": handler.response_serializer}
        if handler.unary_unary is not None:
            unary = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                tap.add(method, "request", request)
                response = unary(request, context)
                tap.add(method, "response", response)
                return response

            return grpc.unary_unary_rpc_method_handler(unary_unary, **serializers)
        if handler.stream_stream is not None:
            streaming = handler.stream_stream

            def stream_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                replies = streaming(tap._tap_iter(method, "request", requests), context)
                return tap._tap_iter(method, "response", replies)

            return grpc.stream_stream_rpc_method_handler(stream_stream, **serializers)
        if handler.stream_unary is not None:
            upload = handler.stream_unary

            def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                response = upload(tap._tap_iter(method, "request", requests), context)
                tap.add(method, "response", response)
                return response

            return grpc.stream_unary_rpc_method_handler(stream_unary, **serializers)
        return handler

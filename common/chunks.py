"""Typed streams with chunked byte fields: limits are checked before anything is buffered.

A stream is a header message, then messages whose `body` oneof holds one chunk of a bytes field
(or one small item message). The reader knows each field's limit up front (from the header's
declared sizes, or a fixed maximum) and refuses a chunk that would pass it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from common.errors import ProtocolError

CHUNK_BYTES = 2 * 1024 * 1024  # a multiple of 16: keyed-hash ids never straddle two chunks
M = TypeVar("M")


def chunked(data: bytes, make: Callable[[bytes], M]) -> Iterator[M]:
    """One message per chunk of `data` (none for empty data)."""
    for start in range(0, len(data), CHUNK_BYTES):
        yield make(data[start:start + CHUNK_BYTES])


def split_header(messages: Iterable[Any], what: str) -> tuple[Any, Iterator[Any]]:
    """A stream's header (its first message) and the rest of the stream."""
    iterator = iter(messages)
    first = next(iterator, None)
    if first is None or first.WhichOneof("body") != "header":
        raise ProtocolError(f"a {what} must start with its header")
    return first.header, iterator


def read_chunks(messages: Iterable[Any], limits: Mapping[str, int], *, exact: bool,
                items: Mapping[str, int] | None = None,
                ) -> tuple[dict[str, bytes], dict[str, list[Any]]]:
    """Join the chunks of each bytes field in `limits`; collect item messages (at most
    `items[field]` each). exact: every field must come to its limit (a declared size)."""
    pieces: dict[str, list[bytes]] = {name: [] for name in limits}
    sizes = dict.fromkeys(limits, 0)
    found: dict[str, list[Any]] = {name: [] for name in items or {}}
    for message in messages:
        name = message.WhichOneof("body")
        if name in found:
            if len(found[name]) >= (items or {})[name]:
                raise ProtocolError(f"more {name} items than the {(items or {})[name]} expected")
            found[name].append(getattr(message, name))
            continue
        if name not in limits:
            raise ProtocolError(f"unexpected {name or 'empty'} message in the stream")
        data: bytes = getattr(message, name)
        if sizes[name] + len(data) > limits[name]:
            raise ProtocolError(f"{name} passes its limit of {limits[name]} bytes")
        sizes[name] += len(data)
        pieces[name].append(data)
    if exact:
        short = [f"{n}: {sizes[n]} of {limits[n]} bytes" for n in limits if sizes[n] != limits[n]]
        if short:
            raise ProtocolError(f"stream cut short: {', '.join(short)}")
    return {name: b"".join(p) for name, p in pieces.items()}, found

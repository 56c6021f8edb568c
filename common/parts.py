"""Split named payloads into wire parts under the message limit, and join them back."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from common.errors import LimitExceeded, ProtocolError
from common.limits import MAX_STEP_BYTES, MAX_STEP_PARTS
from common.payload import Payload as Payload
from proto.fedcredit.v1 import common_pb2

PART_BYTES = 2 * 1024 * 1024


def to_parts(payloads: Iterable[Payload]) -> Iterator[common_pb2.Part]:
    for p in payloads:
        pieces = [p.data[i:i + PART_BYTES] for i in range(0, len(p.data), PART_BYTES)] or [b""]
        for index, piece in enumerate(pieces):
            yield common_pb2.Part(name=p.name, sender=p.sender, recipient=p.recipient,
                                  sealed=p.sealed, index=index, last=index == len(pieces) - 1,
                                  data=piece)


def from_parts(parts: Iterable[common_pb2.Part], *, max_bytes: int = MAX_STEP_BYTES,
               max_parts: int = MAX_STEP_PARTS) -> dict[str, Payload]:
    """Join parts by name; each name's parts must arrive in order and end with `last`.

    The count and total size are checked against `max_parts` / `max_bytes` before a part is
    kept, so a step over its limit is refused having held at most the limit.
    """
    pending: dict[str, list[bytes]] = {}
    heads: dict[str, common_pb2.Part] = {}
    done: dict[str, Payload] = {}
    total = 0
    for count, part in enumerate(parts, start=1):
        total += len(part.data)
        if count > max_parts:
            raise LimitExceeded(f"a step of more than {max_parts} parts (limits.max_step_parts)")
        if total > max_bytes:
            raise LimitExceeded(f"a step of more than {max_bytes} bytes (limits.max_step_bytes)")
        if part.name in done:
            raise ProtocolError(f"payload {part.name!r} sent twice")
        pieces = pending.setdefault(part.name, [])
        if part.index != len(pieces):
            raise ProtocolError(f"payload {part.name!r}: part {part.index} out of order")
        heads.setdefault(part.name, part)
        pieces.append(part.data)
        if part.last:
            head = heads[part.name]
            done[part.name] = Payload(name=part.name, data=b"".join(pieces), sender=head.sender,
                                      recipient=head.recipient, sealed=head.sealed)
            del pending[part.name]
    if pending:
        raise ProtocolError(f"payloads cut short: {sorted(pending)}")
    return done


def read_step(messages: Iterable[common_pb2.StepMessage], *, max_bytes: int = MAX_STEP_BYTES,
              max_parts: int = MAX_STEP_PARTS,
              ) -> tuple[common_pb2.StepHeader, dict[str, Payload]]:
    """A step's header (first message) and its named payloads (the rest), within the limits."""
    iterator = iter(messages)
    first = next(iterator, None)
    if first is None or not first.HasField("header"):
        raise ProtocolError("a step must start with its header")
    return first.header, from_parts((m.part for m in iterator), max_bytes=max_bytes,
                                    max_parts=max_parts)


def write_step(payloads: Iterable[Payload], header: common_pb2.StepHeader | None = None,
               ) -> Iterator[common_pb2.StepMessage]:
    """The messages of a step: an optional header, then every payload's parts."""
    if header is not None:
        yield common_pb2.StepMessage(header=header)
    for part in to_parts(payloads):
        yield common_pb2.StepMessage(part=part)

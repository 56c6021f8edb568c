"""Frame lists (the unit every step exchanges) and the header of an encrypted vector."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from common.errors import ProtocolError

_FRAMES_MAGIC = b"FCF1"
VECTOR_HEADER = struct.Struct("<4sQI")  # backend tag, number of values, values per chunk


def pack_frames(frames: Sequence[bytes]) -> bytes:
    """Length-prefixed concatenation of byte strings (the unit every step exchanges)."""
    head = _FRAMES_MAGIC + struct.pack(f"<I{len(frames)}Q", len(frames), *map(len, frames))
    return head + b"".join(frames)


def unpack_frames(data: bytes, *, max_frames: int = 1 << 16) -> list[bytes]:
    """Inverse of `pack_frames`; raises ProtocolError on anything malformed."""
    view = memoryview(data)
    if len(view) < 8 or bytes(view[:4]) != _FRAMES_MAGIC:
        raise ProtocolError("message is not a fedcredit frame list")
    (count,) = struct.unpack_from("<I", view, 4)
    if count > max_frames or len(view) < 8 + 8 * count:
        raise ProtocolError(f"frame list claims {count} frames, more than allowed or present")
    lengths = struct.unpack_from(f"<{count}Q", view, 8)
    offset = 8 + 8 * count
    if offset + sum(lengths) != len(view):
        raise ProtocolError("frame lengths do not add up to the message size")
    out = []
    for length in lengths:
        out.append(bytes(view[offset : offset + length]))
        offset += length
    return out


def pack_vector(tag: bytes, n: int, per: int, chunks: Sequence[bytes]) -> bytes:
    """An encrypted vector: a header (backend tag, n values, `per` per chunk), then the chunks."""
    return pack_frames([VECTOR_HEADER.pack(tag, n, per), *chunks])


def unpack_vector(data: bytes, tag: bytes, per: int) -> tuple[int, list[bytes]]:
    """(n, chunks) of a vector made by backend `tag` with `per` values per chunk."""
    frames = unpack_frames(data)
    if not frames or len(frames[0]) != VECTOR_HEADER.size:
        raise ProtocolError("encrypted vector has no header")
    got, n, got_per = VECTOR_HEADER.unpack(frames[0])
    if got != tag or got_per != per:
        raise ProtocolError(f"vector {got!r}/{got_per} per chunk, expected {tag!r}/{per}")
    if n < 1 or len(frames) - 1 != -(-n // per):
        raise ProtocolError(f"vector of {n} values has {len(frames) - 1} chunks")
    return int(n), frames[1:]

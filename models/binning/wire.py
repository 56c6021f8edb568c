"""The bytes binning steps carry: frame lists with a pydantic-checked JSON head (never pickle)."""

from __future__ import annotations

import json
from typing import TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import ProtocolError
from crypto.he import pack_frames, unpack_frames

Head = TypeVar("Head", bound=BaseModel)


class PrebinsHead(BaseModel):
    """F -> L: its columns' names and how many value bins each has (slot layout is the job's)."""

    model_config = ConfigDict(extra="forbid")

    columns: list[str] = Field(min_length=1)
    value_bins: list[int]


class BinsHead(BaseModel):
    """L -> F: per column the boundary flags to keep and (share_woe) the WOE per slot; how many
    encrypted WOE columns of L's follow."""

    model_config = ConfigDict(extra="forbid")

    kept: list[list[bool]]
    woe: list[list[float]] | None
    vectors: int = Field(ge=0)


class CorrelationHead(BaseModel):
    """F -> L: its own column pairs whose WOE columns correlate above the job's threshold and,
    only when the job asks for VIF, the whole correlation matrix of its WOE columns."""

    model_config = ConfigDict(extra="forbid")

    pairs: list[tuple[int, int]]
    matrix: list[list[float]] | None = None


class CrossHead(BaseModel):
    """F -> L: which feature nodes' encrypted WOE columns F summed per its bins, in order; one
    frame per (sender column) follows, each holding F's masked per-bin sums for its columns."""

    model_config = ConfigDict(extra="forbid")

    senders: list[str]


def pack(head: BaseModel, *frames: bytes) -> bytes:
    """A head and its frames; a head field at its default is left out (an optional addition
    leaves the bytes of messages that do not use it as they were)."""
    return pack_frames([head.model_dump_json(exclude_defaults=True).encode(), *frames])


def unpack(data: bytes, model: type[Head], what: str) -> tuple[Head, list[bytes]]:
    frames = unpack_frames(data)
    if not frames:
        raise ProtocolError(f"{what}: empty message")
    try:
        head = model.model_validate(json.loads(frames[0]))
    except (ValidationError, ValueError) as err:
        raise ProtocolError(f"{what}: malformed head: {err}") from err
    return head, frames[1:]


def encode_counts(counts: np.ndarray) -> bytes:
    return np.asarray(counts, dtype="<i8").tobytes()


def decode_counts(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    if len(data) != 8 * shape[0] * shape[1]:
        raise ProtocolError(f"counts of {len(data)} bytes for {shape[0]}x{shape[1]} slots")
    counts = np.frombuffer(data, dtype="<i8").astype(np.int64).reshape(shape)
    if counts.size and counts.min() < 0:
        raise ProtocolError("negative row counts")
    return counts

"""Tests for frame lists and encrypted-vector headers."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import ProtocolError
from crypto.he.frames import pack_frames, pack_vector, unpack_frames, unpack_vector


@given(st.lists(st.binary(max_size=64), max_size=8))
def test_frames_round_trip(frames: list[bytes]) -> None:
    assert unpack_frames(pack_frames(frames)) == frames


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_frame_decoder_only_raises_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        unpack_frames(data)


def test_vector_round_trip_and_refusals() -> None:
    data = pack_vector(b"TEST", 5, 2, [b"a", b"b", b"c"])
    assert unpack_vector(data, b"TEST", 2) == (5, [b"a", b"b", b"c"])
    with pytest.raises(ProtocolError, match="expected"):
        unpack_vector(data, b"OTHR", 2)
    with pytest.raises(ProtocolError, match="2 chunks"):
        unpack_vector(pack_vector(b"TEST", 5, 2, [b"a", b"b"]), b"TEST", 2)
    with pytest.raises(ProtocolError, match="0 values"):
        unpack_vector(pack_vector(b"TEST", 0, 2, []), b"TEST", 2)
    with pytest.raises(ProtocolError, match="no header"):
        unpack_vector(pack_frames([]), b"TEST", 2)

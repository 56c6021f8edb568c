"""The relay's refusal bitmap: the same ids from every node, or no answer at all."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import ProtocolError
from coordinator.scoring import _refused_union


def _bits(*flags: int) -> bytes:
    return np.packbits(np.asarray(flags, dtype=np.uint8)).tobytes()


def test_ids_every_node_refused_go_back_naming_no_node() -> None:
    assert _refused_union([_bits(0, 1, 0), _bits(0, 1, 0)], 3) == _bits(0, 1, 0)
    assert _refused_union([b"", b""], 3) == b""


def test_an_id_one_node_answered_and_another_refused_answers_nothing() -> None:
    with pytest.raises(ProtocolError, match="disagree on the query budget of 1 enterprise"):
        _refused_union([_bits(0, 1, 0), b""], 3)


def test_a_bitmap_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ProtocolError, match="bitmap of 2 bytes for 3 ids"):
        _refused_union([b"\x00\x00"], 3)

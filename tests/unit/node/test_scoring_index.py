"""Pseudonyms evaluated in parallel chunks equal those evaluated one chunk at a time."""

from __future__ import annotations

import pytest

from common.errors import ProtocolError
from crypto.pseudonym import PseudonymKey, split
from crypto.psi_pool import PsiWorkers
from node.scoring.index import pseudonyms_for

KEY = PseudonymKey(bytes(range(7, 39)))
IDS = [f"9131000000{k:08d}" for k in range(300)]


def _evaluate(points: bytes) -> tuple[bytes, str]:
    return KEY.evaluate(points), KEY.key_id


def test_processes_and_chunks_in_flight_change_nothing() -> None:
    serial, key_id = pseudonyms_for(IDS, _evaluate)
    with PsiWorkers(2, serial_below=16, task_points=16) as workers:
        parallel, same = pseudonyms_for(IDS, _evaluate, workers, chunk_points=64)
        raised = KEY.evaluate(KEY.evaluate(b"\x09" + bytes(31)), workers)  # the coordinator's
    assert (parallel, same) == (serial, key_id) and len(split(parallel)) == len(IDS)
    assert raised == KEY.evaluate(KEY.evaluate(b"\x09" + bytes(31)))
    assert pseudonyms_for([], _evaluate) == (b"", "")


def test_a_key_changed_between_chunks_is_refused() -> None:
    other = PseudonymKey(bytes(range(8, 40)))
    calls: list[int] = []

    def rotating(points: bytes) -> tuple[bytes, str]:
        calls.append(1)
        key = KEY if len(calls) == 1 else other
        return key.evaluate(points), key.key_id

    with pytest.raises(ProtocolError, match="key changed"):
        pseudonyms_for(IDS, rotating, chunk_points=100)

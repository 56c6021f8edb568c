"""Limits checked before buffering: a step's parts, any stream, and production mode."""

from __future__ import annotations

import pytest

from common.bounded import bounded
from common.errors import LimitExceeded, ProductionModeError
from common.limits import WireLimits
from common.parts import Payload, from_parts, to_parts
from common.production import PRODUCTION_ENV, refuse_in_production
from proto.fedcredit.v1 import common_pb2


def _parts(size: int, names: int = 1) -> list[common_pb2.Part]:
    return list(to_parts([Payload(name=f"p{i}", data=bytes(size)) for i in range(names)]))


def test_a_step_within_its_limits_joins() -> None:
    done = from_parts(_parts(5 * 1024 * 1024), max_bytes=5 * 1024 * 1024, max_parts=3)
    assert len(done["p0"].data) == 5 * 1024 * 1024


def test_a_step_over_its_byte_limit_is_cut_off_at_the_part_that_passes_it() -> None:
    seen = []

    def parts() -> object:
        for part in _parts(10 * 1024 * 1024):
            seen.append(part.index)
            yield part

    with pytest.raises(LimitExceeded, match="limits.max_step_bytes"):
        from_parts(parts(), max_bytes=3 * 1024 * 1024)  # type: ignore[arg-type]
    assert seen == [0, 1]  # stopped at the second 2 MiB part, the rest never read


def test_a_step_over_its_part_count_is_refused() -> None:
    with pytest.raises(LimitExceeded, match="limits.max_step_parts"):
        from_parts(_parts(10, names=6), max_parts=5)


def test_the_default_limits_pass_a_secureboost_sized_step() -> None:
    limits = WireLimits()
    assert limits.max_step_bytes >= 400 * 1024 * 1024
    assert limits.max_stream_bytes >= limits.max_step_bytes


def test_a_stream_is_cut_off_by_bytes_and_by_count() -> None:
    messages = [common_pb2.Part(data=bytes(1000)) for _ in range(10)]
    small = WireLimits(max_stream_bytes=3500)
    with pytest.raises(LimitExceeded, match="max_stream_bytes"):
        list(bounded(messages, small, "test"))
    few = WireLimits(max_stream_messages=4)
    with pytest.raises(LimitExceeded, match="max_stream_messages"):
        list(bounded(messages, few, "test"))
    assert len(list(bounded(messages, WireLimits(), "test"))) == 10


def test_production_mode_refuses_development_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRODUCTION_ENV, "1")
    with pytest.raises(ProductionModeError, match="--insecure .* refused in production mode"):
        refuse_in_production("--insecure")
    monkeypatch.setenv(PRODUCTION_ENV, "0")
    refuse_in_production("--insecure")


def test_a_psi_stream_past_its_chunk_cap_is_refused_before_it_is_read() -> None:
    import pytest

    from common.errors import LimitExceeded
    from common.limits import MAX_PSI_CHUNKS
    from node.psi_handlers import _capped

    _capped(MAX_PSI_CHUNKS - 1)
    with pytest.raises(LimitExceeded, match=f"more than {MAX_PSI_CHUNKS} chunks"):
        _capped(MAX_PSI_CHUNKS)

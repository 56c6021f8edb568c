"""The one request path of scores and data alerts: mending, cap refusals, batch splitting."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import grpc
import pytest

from common.errors import CapExceeded
from common.rpc import CAP_NAME, CAP_PARTY, CAP_RETRY_AFTER
from crypto.score_wire import STALE_KEY
from node.scoring.request import Request, in_batches, send
from proto.fedcredit.v1 import coordinator_pb2


class Refusal(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str,
                 metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._code, self._details, self._metadata = code, details, metadata

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


class Keys:
    key_id = "k1"


class Source:
    def __init__(self, cache: Keys) -> None:
        self.cache, self.forgotten = cache, 0

    def forget(self) -> None:
        self.forgotten += 1
        self.cache.key_id = "k2"


class Audit:
    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []

    def append(self, event: str, **fields: Any) -> None:
        self.entries.append((event, fields))


class FakeScorer:
    party, model_id, job = "bank", "m1", "tr"

    def __init__(self, max_ids: int = 3, caps_after_setup: int = 3) -> None:
        self.cache = Keys()
        self.source = Source(self.cache)
        self.audit = Audit()
        self.max_ids, self.caps_after_setup, self.setups = max_ids, caps_after_setup, 0

    def setup(self) -> None:
        self.setups += 1
        self.max_ids = self.caps_after_setup

    def consent(self, salt: bytes, pseudonyms: bytes, reference: str, purpose: str,
                expires: float) -> tuple[bytes, bytes]:
        return b"record", b"signature"

    def _pseudonyms_under_key(self, ids: list[str]) -> tuple[bytes, str]:
        return self.cache.key_id.encode() * len(ids), self.cache.key_id

    def _seal_ids(self, pseudonyms: bytes, salt: bytes, number: int) -> dict[str, bytes]:
        return {"core": b"sealed:" + pseudonyms}


class Coordinator:
    """A `DataAlerts`-like RPC failing with `errors` first, then answering."""

    def __init__(self, *errors: grpc.RpcError) -> None:
        self.errors = list(errors)
        self.headers: list[coordinator_pb2.ScoreRequestHeader] = []

    def __call__(self, messages: Iterable[coordinator_pb2.ScoreRequest], timeout: float,
                 ) -> Iterator[coordinator_pb2.DataAlertReply]:
        sent = list(messages)
        self.headers.append(sent[0].header)
        assert all(m.WhichOneof("body") == "sealed_ids" for m in sent[1:])
        if self.errors:
            raise self.errors.pop(0)
        return iter([coordinator_pb2.DataAlertReply(level_sums=b"sums")])


def _request(ids: list[str]) -> Request:
    return Request(ids, b"k1" * len(ids), "k1", 7, "MON-1", "portfolio monitoring", 0.0)


FIELDS = {"level_sums": 64, "refused_budget": 1}


def test_a_stale_key_and_a_lost_setup_are_mended_once_each() -> None:
    scorer = FakeScorer()
    rpc = Coordinator(Refusal(grpc.StatusCode.FAILED_PRECONDITION, f"x {STALE_KEY} y"),
                      Refusal(grpc.StatusCode.FAILED_PRECONDITION, "model m1 is not set up"))
    request = _request(["a", "b"])
    fields, _ = send(scorer, rpc, request, FIELDS, {}, "data_alerts")  # type: ignore[arg-type]
    assert fields["level_sums"] == b"sums"
    assert scorer.source.forgotten == 1 and scorer.setups == 1
    assert [h.pseudonym_key for h in rpc.headers] == ["k1", "k2", "k2"]
    assert (request.key_id, request.pseudonyms) == ("k2", b"k2k2")  # the ones last sent
    assert {h.ids for h in rpc.headers} == {2} and {h.model_request_bytes for h in rpc.headers} \
        == {0}


def test_the_same_cause_twice_is_the_answer() -> None:
    scorer = FakeScorer()
    stale = Refusal(grpc.StatusCode.FAILED_PRECONDITION, STALE_KEY)
    with pytest.raises(grpc.RpcError):
        send(scorer, Coordinator(stale, stale), _request(["a"]), FIELDS, {},  # type: ignore[arg-type]
             "data_alerts")
    assert scorer.source.forgotten == 1


def test_a_cap_refusal_is_cap_exceeded_and_audited_under_the_event() -> None:
    scorer = FakeScorer()
    refusal = Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, "logistics refused: 12 a day", (
        (CAP_PARTY, "logistics"), (CAP_NAME, "max_requests_per_day"), (CAP_RETRY_AFTER, "60")))
    with pytest.raises(CapExceeded) as err:
        send(scorer, Coordinator(refusal), _request(["a"]), FIELDS, {},  # type: ignore[arg-type]
             "data_alerts")
    assert (err.value.party, err.value.cap, err.value.retry_after_s) == (
        "logistics", "max_requests_per_day", 60)
    event, fields = scorer.audit.entries[-1]
    assert event == "data_alerts.refused" and fields["details"]["cap"] == "max_requests_per_day"


def test_batches_within_the_cap_and_one_more_look_at_the_caps() -> None:
    scorer = FakeScorer(max_ids=5, caps_after_setup=3)
    asked: list[tuple[int, int]] = []

    def one(start: int, end: int) -> tuple[int, int]:
        asked.append((start, end))
        if end - start > 3:
            raise CapExceeded("core refused", party="core", cap="max_ids_per_request")
        return start, end

    assert in_batches(scorer, 7, one) == [(0, 3), (3, 6), (6, 7)]  # type: ignore[arg-type]
    assert asked[0] == (0, 5) and scorer.setups == 1


def test_a_refusal_after_some_batches_says_how_many_were_answered() -> None:
    scorer = FakeScorer(max_ids=2)

    def one(start: int, end: int) -> int:
        if start >= 2:
            raise CapExceeded("logistics refused", party="logistics", cap="max_requests_per_day",
                              retry_after_s=5)
        return end

    with pytest.raises(CapExceeded) as err:
        in_batches(scorer, 5, one)  # type: ignore[arg-type]
    assert "(2 of the 5 ids were answered)" in str(err.value)
    assert (err.value.party, err.value.retry_after_s) == ("logistics", 5)
    assert scorer.setups == 0  # not a cap of ids per request: the caps are not asked again

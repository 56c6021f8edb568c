"""The one request path of the bank's scoring set-up: joint scores and data alerts alike.

A request (`Request`) is a header with its signed consent record over the pseudonyms, the
pseudonyms sealed to each feature node, and the model's request if any (none for data
alerts), sent to one of the coordinator's scoring RPCs (`Score`, `DataAlerts`); `send` reads
the fields asked of the answer. It mends each cause once, then that cause's error is the
answer: a pseudonym key the coordinator replaced (the pseudonyms are made again), a set-up a
node or the coordinator lost (given again). A node's cap refusing (RESOURCE_EXHAUSTED) is a
`CapExceeded` naming the node and the cap, audited as `<event>.refused`. `in_batches` splits
a batch into requests within the feature nodes' smallest `max_ids_per_request` (after a
refusal by that cap, the caps are asked again once, as a node may have lowered its own).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from common.chunks import CHUNK_BYTES, chunked, read_chunks
from common.errors import CapExceeded
from common.rpc import cap_exceeded
from crypto.consent import SALT_BYTES
from crypto.score_wire import STALE_KEY, sealed_ids_bytes
from proto.fedcredit.v1 import coordinator_pb2

if TYPE_CHECKING:
    from node.scoring.bank import BankScorer

SCORE_DEADLINE_S = 300.0
T = TypeVar("T")

Rpc = Callable[..., Iterable[Any]]
"""A streaming call of the coordinator taking `ScoreRequest`s: `stub.Score`, `stub.DataAlerts`."""
Answer = tuple[dict[str, bytes], dict[str, list[Any]]]
"""The answer's fields (bytes, by name) and items (messages, by name): `read_chunks`'."""


@dataclass
class Request:
    """One request's ids, their pseudonyms (under `key_id`), its number and consent."""

    ids: Sequence[str]
    pseudonyms: bytes
    key_id: str
    number: int
    consent: str
    purpose: str
    expires: float
    model_request: bytes = b""


def send(scorer: BankScorer, rpc: Rpc, request: Request, fields: Mapping[str, int],
         items: Mapping[str, int], event: str) -> Answer:
    """Send `request` through `rpc` (mending a stale pseudonym key or a lost set-up once
    each) and read `fields` and `items` (name -> most bytes / messages) of the answer.
    `request.pseudonyms` and `key_id` are the ones last sent when it returns."""
    mended: set[str] = set()  # each cause is mended once, then its error is the answer
    while True:
        try:
            return _ask(scorer, rpc, request, fields, items)
        except grpc.RpcError as err:
            details = err.details() or ""
            if STALE_KEY in details and STALE_KEY not in mended:
                mended.add(STALE_KEY)  # the coordinator's key changed: make them again
                scorer.source.forget()
            elif "is not set up" in details and "setup" not in mended:
                mended.add("setup")  # a node or the coordinator lost our set-up
                scorer.setup()
            elif err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                capped = cap_exceeded(err, f"the network refused: {details}")
                scorer.audit.append(f"{event}.refused", job=scorer.job,
                                    consent=request.consent, purpose=request.purpose,
                                    rows=len(request.ids), details={
                                        "reason": details, "cap": capped.cap,
                                        "party": capped.party})
                raise capped from err
            else:
                raise


def _ask(scorer: BankScorer, rpc: Rpc, request: Request, fields: Mapping[str, int],
         items: Mapping[str, int]) -> Answer:
    if request.key_id != scorer.cache.key_id:  # another request found the coordinator's new key
        request.pseudonyms, request.key_id = scorer._pseudonyms_under_key(request.ids)
    salt = secrets.token_bytes(SALT_BYTES)
    record, signature = scorer.consent(salt, request.pseudonyms, request.consent.strip(),
                                       request.purpose, request.expires)
    header = coordinator_pb2.ScoreRequestHeader(
        bank=scorer.party, model_id=scorer.model_id, model_job=scorer.job,
        consent=request.consent, purpose=request.purpose, request_no=request.number,
        ids=len(request.ids), model_request_bytes=len(request.model_request),
        consent_record=record, consent_signature=signature,
        sealed_ids_bytes=sealed_ids_bytes(len(request.ids)), pseudonym_key=request.key_id)
    sealed = scorer._seal_ids(request.pseudonyms, salt, request.number)

    def messages() -> Iterator[coordinator_pb2.ScoreRequest]:
        yield coordinator_pb2.ScoreRequest(header=header)
        for node, blob in sealed.items():
            for start in range(0, len(blob), CHUNK_BYTES):
                yield coordinator_pb2.ScoreRequest(sealed_ids=coordinator_pb2.SealedIds(
                    node=node, sealed=blob[start:start + CHUNK_BYTES]))
        yield from chunked(request.model_request,
                           lambda c: coordinator_pb2.ScoreRequest(model_request=c))

    replies = rpc(messages(), timeout=SCORE_DEADLINE_S)
    found: Answer = read_chunks(replies, dict(fields), exact=False, items=dict(items))
    return found


def in_batches(scorer: BankScorer, total: int, one: Callable[[int, int], T]) -> list[T]:
    """`one(start, end)` over `range(total)` in requests of at most `scorer.max_ids` ids, in
    order. A cap refusal raises `CapExceeded` saying how many ids were answered before it."""
    done: list[T] = []
    start, asked_caps = 0, False
    while start < total:
        end = min(total, start + scorer.max_ids)
        try:
            done.append(one(start, end))
        except CapExceeded as err:
            if err.cap == "max_ids_per_request" and not asked_caps:
                asked_caps = True
                scorer.setup()  # a node lowered its cap since our set-up: learn it
                if scorer.max_ids < end - start:
                    continue
            answered = f" ({start:,} of the {total:,} ids were answered)" if start else ""
            raise CapExceeded(f"{err}{answered}", party=err.party, cap=err.cap,
                              retry_after_s=err.retry_after_s) from err
        start = end
    return done

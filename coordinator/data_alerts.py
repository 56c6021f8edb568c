"""Data alerts at the coordinator: the sum of the feature nodes' encrypted levels, nothing more.

A bank's data-alert request is checked like a scoring request (`ScoringRelay.open_request`:
the bank's certificate, its model and set-up, the signed consent, the pseudonym key, one sealed
pseudonym list per feature node) and must carry no model request. Every feature node of the
model gets the same header and its own sealed list (`DataAlertPartial`); their CKKS level
ciphertexts are added and only the sum goes back, and only when every node answered (a node
that fails fails the request: one node's levels alone must never reach the bank). Ids the nodes
refused go back as one bitmap naming no node (`_refused_union`: they must agree). Each node's
snapshot versions and per-feature PSI go back named by node: they describe the node's own table
as a whole, not the asked ids. The coordinator holds no key that opens a level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from common.chunks import chunked, read_chunks
from common.errors import ProtocolError
from common.limits import MAX_PART_BYTES
from coordinator.scoring import (
    MAX_SNAPSHOT_BYTES,
    SCORE_DEADLINE_S,
    ScoringRelay,
    _call_node,
    _refused_union,
)
from crypto.he import pack_frames, unpack_frames
from crypto.he import scoring as score_he
from proto.fedcredit.v1 import coordinator_pb2, node_pb2

WHAT = "data-alert request"
MAX_FEATURES = 512  # PSI items read from one node's answer


@dataclass
class NodeAnswer:
    """One feature node's answer, as read (sizes bounded before buffering)."""

    levels: bytes
    refused: bytes
    snapshot: str
    reference: str
    stability: list[node_pb2.FeatureStability] = field(default_factory=list)


def data_alerts(relay: ScoringRelay, messages: Iterable[coordinator_pb2.ScoreRequest],
                caller: str | None, insecure: bool) -> Iterator[coordinator_pb2.DataAlertReply]:
    """Forward a bank's data-alert request to every feature node of its model; the sum back."""
    opened = relay.open_request(messages, caller, insecure, WHAT)
    if opened.model_request:
        raise ProtocolError(f"a {WHAT} carries no model request")
    header, model = opened.header, opened.model
    calls = [relay.pool.submit(_call_node, name, WHAT,
                               _partial_call(relay, name, opened.forward, opened.sealed[name]),
                               attempts=2, backoff_s=0.2) for name in opened.features]
    answers = {name: call.result() for name, call in zip(opened.features, calls, strict=True)}
    sums = score_he.add_ciphertexts(opened.session.context,
                                    [unpack_frames(a.levels) for a in answers.values()])
    refused = _refused_union([a.refused for a in answers.values()], header.ids)
    relay.audit.append("data_alerts", job=model.job_id, peer=header.bank,
                       consent=opened.forward.consent, purpose=header.purpose, rows=header.ids,
                       details={"model": model.model_id, "parties": len(answers)})
    yield from chunked(pack_frames(sums),
                       lambda c: coordinator_pb2.DataAlertReply(level_sums=c))
    yield from chunked(refused, lambda c: coordinator_pb2.DataAlertReply(refused_budget=c))
    for name, answer in answers.items():
        yield coordinator_pb2.DataAlertReply(snapshot=coordinator_pb2.NodeSnapshotVersion(
            party=name, version=answer.snapshot))
        for item in answer.stability:
            yield coordinator_pb2.DataAlertReply(stability=coordinator_pb2.NodeFeatureStability(
                party=name, stability=item, reference=answer.reference,
                current=answer.snapshot))


def _partial_call(relay: ScoringRelay, name: str, header: node_pb2.ScorePartialHeader,
                  sealed: bytes) -> Callable[[], NodeAnswer]:
    stub = relay.clients.get(relay._node(name)).stub

    def messages() -> Iterator[node_pb2.ScorePartialRequest]:
        yield node_pb2.ScorePartialRequest(header=header)
        yield from chunked(sealed, lambda c: node_pb2.ScorePartialRequest(sealed_ids=c))

    def call() -> NodeAnswer:
        replies = stub.DataAlertPartial(messages(), timeout=SCORE_DEADLINE_S)
        fields, items = read_chunks(replies, {"levels": MAX_PART_BYTES,
                                              "refused_budget": (header.ids + 7) // 8,
                                              "snapshot": MAX_SNAPSHOT_BYTES,
                                              "reference": MAX_SNAPSHOT_BYTES},
                                    exact=False, items={"stability": MAX_FEATURES})
        if not fields["levels"]:
            raise ProtocolError(f"{name} answered a {WHAT} without levels")
        return NodeAnswer(levels=fields["levels"], refused=fields["refused_budget"],
                          snapshot=fields["snapshot"].decode(errors="replace"),
                          reference=fields["reference"].decode(errors="replace"),
                          stability=list(items["stability"]))

    return call

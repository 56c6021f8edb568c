"""Joint scoring at the coordinator: pseudonym key, signed set-ups, sums; sees no id or result.

`evaluate` raises a registered node's blinded points to the network's pseudonym key
(`crypto.pseudonym`, kept 0600 in the state directory; at most `pseudonym_evaluations_per_day`
points a node a day, counted in the store so a restart does not reset it; spread over the PSI
process pool). For the requesting bank only (its certificate must name it): `resolve` names its
model and the feature nodes' signed sealing keys; `setup` checks the bank's signature over its
set-up (public CKKS context and the model's public context; a context carrying a secret key is
refused), keeps the context and the model's relay (`models.scoring.SCORING_KINDS[algorithm]
.relay`) and forwards the same signed bytes to every feature node, answering the smallest of
their `max_ids_per_request` caps (the bank splits its batches by it); `score` checks the signed
consent record (signature, expiry, bank, model job, purpose, reference, set-up; a refusal is
audited) and that the pseudonyms were made under the current key, forwards each node the
pseudonym list the bank sealed to it and the model's request, and adds the nodes' CKKS parts and
combines their model parts only when every feature node of the model answered; ids the nodes
refused (budget, model versions) go back as one bitmap naming no node; a node's refusal by one of
its caps goes back as RESOURCE_EXHAUSTED (`CapExceeded`) naming it and the cap. No gRPC server
code here: coordinator.server calls these.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import grpc
import numpy as np
import tenseal as ts

from common.audit import AuditLog
from common.chunks import CHUNK_BYTES, chunked, read_chunks, split_header
from common.errors import (
    CapExceeded,
    PeerUnavailable,
    ProtocolError,
    TrustError,
    seconds_to_next_utc_day,
)
from common.limits import MAX_CONTEXT_BYTES, MAX_PART_BYTES, MAX_SCORE_IDS
from common.rpc import RETRYABLE, cap_exceeded
from coordinator.nodes import NodeClients
from coordinator.store import ModelRecord, NodeRecord, Store
from crypto.consent import ConsentRefused, verify_blob, verify_consent
from crypto.he import pack_frames, unpack_frames
from crypto.he import scoring as score_he
from crypto.pseudonym import MAX_POINTS, PseudonymKey
from crypto.psi_pool import PsiWorkers, check_points
from crypto.score_wire import (
    SETUP_DOMAIN,
    STALE_KEY,
    sealed_ids_bytes,
    setup_digest,
    setup_payload,
)
from models.scoring import SCORING_KINDS, RelayPart, ScoringKind
from proto.fedcredit.v1 import common_pb2, coordinator_pb2, node_pb2

log = logging.getLogger(__name__)

SCORE_DEADLINE_S = 120.0
MAX_SNAPSHOT_BYTES = 64  # a node's data snapshot version in its answer
DAILY_EVALUATIONS = 5_000_000  # default: pseudonym points one node may have evaluated a day
T = TypeVar("T")


@dataclass(frozen=True)
class BankSession:
    """A bank's set-up of one model: its public CKKS context, the model's relay, the digest of
    the signed set-up every feature node holds."""

    context: ts.Context
    relay: RelayPart
    digest: str


@dataclass(frozen=True)
class Opened:
    """A bank's request that passed the coordinator's checks, ready to forward."""

    header: coordinator_pb2.ScoreRequestHeader
    model: ModelRecord
    session: BankSession
    features: list[str]  # the model's feature nodes, in its party order
    sealed: dict[str, bytes]  # each feature node's sealed pseudonym list
    model_request: bytes
    forward: node_pb2.ScorePartialHeader  # what every feature node gets


def _kind(model: ModelRecord) -> ScoringKind:
    kind = SCORING_KINDS.get(model.algorithm)
    if kind is None:
        raise ProtocolError(f"model {model.model_id} is {model.algorithm}: no joint scoring")
    return kind


def _call_node(party: str, what: str, call: Callable[[], T], *, attempts: int,
               backoff_s: float) -> T:
    """Call a node; retry only when it is unreachable; its refusal is ours, with its reason
    (a refusal by one of its caps stays a `CapExceeded` naming it and the cap)."""
    last: grpc.RpcError | None = None
    for attempt in range(attempts):
        try:
            return call()
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:  # one of its own caps
                raise cap_exceeded(err, f"{party} refused {what}: {err.details()}",
                                   party) from err
            if err.code() not in RETRYABLE:
                raise ProtocolError(f"{party} refused {what}: {err.code().name}: "
                                    f"{err.details()}") from err
            last = err
            time.sleep(backoff_s * 2**attempt)
    assert last is not None
    raise PeerUnavailable(f"{party} did not answer {what} after {attempts} attempts: "
                          f"{last.code().name}")


class ScoringRelay:
    """Handles the requesting bank's ResolveScoringModel, ScoreSetup and Score calls."""

    def __init__(self, store: Store, clients: NodeClients, audit: AuditLog, key: PseudonymKey,
                 *, daily_evaluations: int = DAILY_EVALUATIONS,
                 workers: PsiWorkers | None = None) -> None:
        """`daily_evaluations`: pseudonym points one node may have evaluated a day (counted
        in the store, so a restart does not reset it); `workers` spread evaluations over
        processes (default: serial)."""
        self.store = store
        self.clients = clients
        self.audit = audit
        self.key = key
        self.daily_evaluations = daily_evaluations
        self.workers = workers
        self.sessions: dict[tuple[str, str], BankSession] = {}
        self.pool = ThreadPoolExecutor(max_workers=8)
        self._lock = threading.Lock()

    # pseudonyms -----------------------------------------------------------------------------
    def evaluate(self, request: coordinator_pb2.PseudonymPoints, caller: str | None,
                 insecure: bool) -> coordinator_pb2.PseudonymPoints:
        """Raise a registered node's blinded points to the pseudonym key (sees no id)."""
        who = caller or "insecure"
        if not insecure and (caller is None or self.store.node(caller) is None):
            raise TrustError(f"{caller!r} is not a registered node: no pseudonyms for it")
        count = check_points(request.points, "blinded pseudonym points")
        if not 0 < count <= MAX_POINTS:
            raise ProtocolError(f"a pseudonym evaluation takes 1 to {MAX_POINTS} points, "
                                f"not {count}")
        cap = self.daily_evaluations
        done = self.store.charge_evaluations(who, dt.datetime.now(dt.UTC).date().isoformat(),
                                             count, cap)
        if done is not None:
            reason = (f"{who} has had {done} pseudonym points evaluated today; {count} more "
                      f"would pass the cap of {cap} a day (pseudonym_evaluations_per_day in "
                      f"the coordinator config)")
            self.audit.append("pseudonyms.refused", peer=who, rows=count,
                              details={"reason": reason})
            raise CapExceeded(reason, party="coordinator", cap="pseudonym_evaluations_per_day",
                              retry_after_s=seconds_to_next_utc_day())
        return coordinator_pb2.PseudonymPoints(
            points=self.key.evaluate(request.points, self.workers), key_id=self.key.key_id)

    # who asks, for which model -----------------------------------------------------------------
    def _bank(self, bank: str, caller: str | None, insecure: bool) -> NodeRecord:
        if not insecure and caller != bank:
            raise TrustError(f"certificate of {caller!r} cannot score for bank {bank!r}")
        record = self.store.node(bank)
        if record is None or record.role != "label":
            raise ProtocolError(f"{bank!r} is not a registered label node")
        return record

    def _model(self, bank: str, model_id: str, model_job: str | None = None) -> ModelRecord:
        models = [m for m in self.store.models() if m.parties and m.parties[0] == bank]
        if model_id:
            models = [m for m in models if m.model_id == model_id]
        if not models:
            raise ProtocolError(f"no model {model_id or ''} trained with {bank} as label party")
        model = max(models, key=lambda m: m.created_at)
        if model_job is not None and model_job != model.job_id:
            raise ProtocolError(f"scoring request names job {model_job}, the model's is "
                                f"{model.job_id}")
        return model

    def _node(self, name: str) -> NodeRecord:
        record = self.store.node(name)
        if record is None:
            raise ProtocolError(f"feature node {name!r} is not registered")
        return record

    # handlers ---------------------------------------------------------------------------------
    def resolve(self, request: coordinator_pb2.ResolveScoringModelRequest, caller: str | None,
                insecure: bool) -> coordinator_pb2.ScoringModel:
        self._bank(request.bank, caller, insecure)
        model = self._model(request.bank, request.model_id)
        keys = []
        for name in model.parties[1:]:
            node = self._node(name)
            keys.append(common_pb2.PeerKey(party=name, cert_pem=node.cert_pem,
                                           sealing_public_key=node.sealing_public_key,
                                           signature=node.signature))
        return coordinator_pb2.ScoringModel(model_id=model.model_id, model_job=model.job_id,
                                            algorithm=model.algorithm, feature_nodes=keys)

    def setup(self, messages: Iterable[coordinator_pb2.ScoreSetupUpload], caller: str | None,
              insecure: bool) -> node_pb2.ScoreSetupReply:
        header, rest = split_header(messages, "scoring set-up")
        record = self._bank(header.bank, caller, insecure)
        model = self._model(header.bank, header.model_id, header.model_job)
        for size in (header.context_bytes, header.model_context_bytes):
            if size > MAX_CONTEXT_BYTES:
                raise ProtocolError(f"a public context of {size} bytes is over the limit of "
                                    f"{MAX_CONTEXT_BYTES}")
        fields, _ = read_chunks(rest, {"context": header.context_bytes,
                                       "model_context": header.model_context_bytes}, exact=True)
        if not fields["context"]:
            raise ProtocolError("scoring set-up carries no public context")
        payload = setup_payload(model.job_id, header.bank, fields["context"],
                                fields["model_context"])
        if not insecure:
            try:
                verify_blob(record.cert_pem, SETUP_DOMAIN, payload, header.setup_signature,
                            signer=header.bank, what="scoring set-up")
            except ConsentRefused as err:
                raise TrustError(str(err)) from err
        public = score_he.load_context(fields["context"], private=False)  # refuses a secret key
        relay = _kind(model).relay(model.job_id, fields["model_context"])
        bank_key = common_pb2.PeerKey(party=header.bank, cert_pem=record.cert_pem,
                                      sealing_public_key=record.sealing_public_key,
                                      signature=record.signature)
        request = node_pb2.ScoreSetupRequest(
            bank=bank_key, algorithm=model.algorithm, model_job=model.job_id,
            context=fields["context"], model_context=fields["model_context"],
            setup_signature=header.setup_signature, pseudonym_key=self.key.key_id)
        calls = []
        for name in model.parties[1:]:  # the same signed bytes to every feature node
            stub = self.clients.get(self._node(name)).stub
            calls.append(self.pool.submit(
                _call_node, name, "scoring set-up",
                lambda stub=stub: stub.ScoreSetup(request, timeout=SCORE_DEADLINE_S),
                attempts=3, backoff_s=1.0))
        caps = [call.result().max_ids_per_request for call in calls]
        with self._lock:
            self.sessions[(header.bank, model.job_id)] = BankSession(public, relay,
                                                                     setup_digest(payload))
        self.audit.append("score.setup", job=model.job_id, peer=header.bank,
                          purpose="joint scoring")
        said = [cap for cap in caps if cap > 0]  # the smallest cap: every node answers a chunk
        return node_pb2.ScoreSetupReply(max_ids_per_request=min(said, default=0))

    def _check_consent(self, record: NodeRecord, header: coordinator_pb2.ScoreRequestHeader,
                       model: ModelRecord, session: BankSession, insecure: bool) -> None:
        """Refuse (and audit) a consent that is not a record signed by the bank, unexpired,
        for this model, purpose, reference and set-up; before anything is relayed."""
        if insecure:
            return
        try:
            verify_consent(record.cert_pem, header.consent_record, header.consent_signature,
                           bank=header.bank, model_job=model.job_id, purpose=header.purpose,
                           reference=header.consent.strip(), setup=session.digest,
                           pseudonyms=None)
        except ConsentRefused as err:
            self.audit.append("score.refused", job=model.job_id, peer=header.bank,
                              consent=header.consent.strip(), purpose=header.purpose,
                              rows=header.ids, details={"reason": f"consent: {err}"})
            raise ProtocolError(f"consent refused: {err}") from err

    def open_request(self, messages: Iterable[coordinator_pb2.ScoreRequest],
                     caller: str | None, insecure: bool, what: str = "scoring request",
                     ) -> Opened:
        """One request read and checked (bank, model, consent, set-up, pseudonym key, sealed
        lists), with the header every feature node gets; shared by scoring and data alerts."""
        header, rest = split_header(messages, what)
        bank = header.bank
        record = self._bank(bank, caller, insecure)
        model = self._model(bank, header.model_id, header.model_job)
        consent, purpose = header.consent.strip(), header.purpose
        if not consent:
            self.audit.append("score.refused", job=model.job_id, peer=bank, purpose=purpose,
                              details={"reason": "no consent reference"})
            raise ProtocolError(f"a {what} needs the enterprise's consent reference")
        if not 0 < header.ids <= MAX_SCORE_IDS:
            raise ProtocolError(f"a {what} carries 1 to {MAX_SCORE_IDS} ids, not {header.ids}")
        if header.model_request_bytes > MAX_PART_BYTES:
            raise ProtocolError(f"a model request of {header.model_request_bytes} bytes is over "
                                f"the limit of {MAX_PART_BYTES}")
        with self._lock:
            session = self.sessions.get((bank, model.job_id))
        if session is None:
            raise ProtocolError(f"scoring of {model.model_id} is not set up for {bank}")
        self._check_consent(record, header, model, session, insecure)
        if header.pseudonym_key != self.key.key_id:
            raise ProtocolError(f"the request's pseudonyms were made under pseudonym key "
                                f"{header.pseudonym_key or '(none named)'}; the network's key is "
                                f"{self.key.key_id}: {STALE_KEY}")
        features = model.parties[1:]
        size = sealed_ids_bytes(header.ids)
        if header.sealed_ids_bytes != size:
            raise ProtocolError(f"sealed pseudonym lists of {header.sealed_ids_bytes} bytes for "
                                f"{header.ids} ids; expected {size}")
        per_node = -(-size // CHUNK_BYTES)
        fields, items = read_chunks(rest, {"model_request": header.model_request_bytes},
                                    exact=True, items={"sealed_ids": per_node * len(features)})
        sealed = _sealed_lists(items["sealed_ids"], features, size)
        forward = node_pb2.ScorePartialHeader(
            bank=bank, algorithm=model.algorithm, model_job=model.job_id, consent=consent,
            purpose=purpose, request_no=header.request_no, ids=header.ids,
            model_request_bytes=header.model_request_bytes,
            consent_record=header.consent_record, consent_signature=header.consent_signature,
            pseudonym_key=self.key.key_id)
        return Opened(header=header, model=model, session=session, features=features,
                      sealed=sealed, model_request=fields["model_request"], forward=forward)

    def score(self, messages: Iterable[coordinator_pb2.ScoreRequest], caller: str | None,
              insecure: bool) -> Iterator[coordinator_pb2.ScoreReply]:
        opened = self.open_request(messages, caller, insecure)
        header, model, session, features = (opened.header, opened.model, opened.session,
                                             opened.features)
        bank, consent, purpose = header.bank, opened.forward.consent, header.purpose
        sealed, forward, fields = opened.sealed, opened.forward, {
            "model_request": opened.model_request}
        calls = [self.pool.submit(_call_node, name, "scoring request",
                                  self._partial_call(name, forward, sealed[name],
                                                     fields["model_request"]),
                                  attempts=2, backoff_s=0.2) for name in features]
        answers = {name: call.result() for name, call in zip(features, calls, strict=True)}
        sums = score_he.add_ciphertexts(session.context,
                                        [unpack_frames(a["partials"]) for a in answers.values()])
        combined = session.relay.combine(header.request_no,
                                         {name: a["model_part"] for name, a in answers.items()})
        refused = _refused_union([a["refused_budget"] for a in answers.values()], header.ids)
        self.audit.append("score", job=model.job_id, peer=bank, consent=consent,
                          purpose=purpose, rows=header.ids,
                          details={"model": model.model_id, "parties": len(features) + 1})
        yield from chunked(pack_frames(sums), lambda c: coordinator_pb2.ScoreReply(sums=c))
        yield from chunked(combined, lambda c: coordinator_pb2.ScoreReply(model_sum=c))
        yield from chunked(refused, lambda c: coordinator_pb2.ScoreReply(refused_budget=c))
        for name, answer in answers.items():  # which data snapshot each node answered from
            if answer["snapshot"]:
                yield coordinator_pb2.ScoreReply(snapshot=coordinator_pb2.NodeSnapshotVersion(
                    party=name, version=answer["snapshot"].decode(errors="replace")))

    def _partial_call(self, name: str, header: node_pb2.ScorePartialHeader, sealed: bytes,
                      model_request: bytes) -> Callable[[], dict[str, bytes]]:
        stub = self.clients.get(self._node(name)).stub

        def messages() -> Iterator[node_pb2.ScorePartialRequest]:
            yield node_pb2.ScorePartialRequest(header=header)
            yield from chunked(sealed, lambda c: node_pb2.ScorePartialRequest(sealed_ids=c))
            yield from chunked(model_request,
                               lambda c: node_pb2.ScorePartialRequest(model_request=c))

        def call() -> dict[str, bytes]:
            replies = stub.ScorePartial(messages(), timeout=SCORE_DEADLINE_S)
            answer, _ = read_chunks(replies, {"partials": MAX_PART_BYTES,
                                              "model_part": MAX_PART_BYTES,
                                              "refused_budget": (header.ids + 7) // 8,
                                              "snapshot": MAX_SNAPSHOT_BYTES},
                                    exact=False)
            return answer

        return call


def _sealed_lists(items: list[coordinator_pb2.SealedIds], nodes: list[str],
                  size: int) -> dict[str, bytes]:
    """Each feature node's sealed pseudonym list, joined from its chunks; every node must have
    one of the declared size (the coordinator cannot open them)."""
    parts: dict[str, list[bytes]] = {name: [] for name in nodes}
    for item in items:
        if item.node not in parts:
            raise ProtocolError(f"a sealed pseudonym list for {item.node!r}, which is not a "
                                f"feature node of this model")
        parts[item.node].append(item.sealed)
    lists = {name: b"".join(chunks) for name, chunks in parts.items()}
    wrong = [f"{name} ({len(blob)} bytes)" for name, blob in lists.items() if len(blob) != size]
    if wrong:
        raise ProtocolError(f"every feature node needs a sealed pseudonym list of {size} bytes; "
                            f"not so for {', '.join(wrong)}")
    return lists


def _refused_union(bitmaps: list[bytes], ids: int) -> bytes:
    """Ids the nodes refused, as one bitmap naming no node; empty when none was refused.

    Every node must refuse the same ids (each counts every asked id, held or not): then a refused
    id gets no part from anyone and its sums are 0. Were one node to answer an id another refused
    (different budgets, or a request that failed half-way), the sums would show the answering
    nodes' parts and coverage alone, so nothing is answered at all.
    """
    size = (ids + 7) // 8
    union, common = np.zeros(size, dtype=np.uint8), np.full(size, 0xFF, dtype=np.uint8)
    for bitmap in bitmaps:
        if bitmap and len(bitmap) != size:
            raise ProtocolError(f"a refusal bitmap of {len(bitmap)} bytes for {ids} ids")
        bits = np.frombuffer(bitmap, dtype=np.uint8) if bitmap else np.zeros(size, np.uint8)
        union |= bits
        common &= bits
    if not union.any():
        return b""
    if (union != common).any():
        disputed = int(np.unpackbits(union ^ common, count=ids).sum())
        raise ProtocolError(f"the feature nodes disagree on the query budget of {disputed} "
                            f"enterprise(s) (their [scoring] daily_budget or max_model_versions "
                            f"differ, or a request failed half-way); nothing was answered: ask "
                            f"again")
    return union.tobytes()

"""Feature node side of joint scoring (DESIGN §4.5): signed set-up, pseudonym lookup, caps,
encrypted parts.

`setup` checks the bank's signature over its set-up (the same bytes every feature node gets),
keeps it with the bank's pinned certificate, makes sure our ids are indexed under the
network's pseudonym key (`node.scoring.index`) and answers our `[scoring] max_ids_per_request`
(caps are not secret; the bank splits its batches by the smallest); `partial` answers one
request: more ids than that cap refused before anything is read, the pseudonym list
the bank sealed to us opened, a consent record signed by the bank's certificate key, unexpired,
for this set-up and about exactly these pseudonyms required and logged (`crypto.consent`), a
pseudonym repeated in one request refused, a bank past `max_requests_per_day` refused; then each
id charged to the bank's daily budget and to the model versions of the period (an id over
`daily_budget` or `max_model_versions` is refused on its own: neutral parts and a bit in
`refused_budget`), then the model's part (`models.scoring.SCORING_KINDS[algorithm]`) beside CKKS
(partial logit, coverage) ciphertexts under the bank's key. Every refusal is audited with its
reason; a request refused whole by a cap raises `CapExceeded` (RESOURCE_EXHAUSTED, naming this
node and the cap, retry-after to 00:00 UTC for the daily one). No gRPC here: node.server calls
these handlers."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import NoReturn

import numpy as np
import tenseal as ts

from common.chunks import chunked, read_chunks, split_header
from common.errors import CapExceeded, ProtocolError, seconds_to_next_utc_day
from common.limits import MAX_PART_BYTES, MAX_SCORE_IDS
from common.tls import secure_channel
from crypto.consent import SALT_BYTES, ConsentRefused, verify_blob, verify_consent
from crypto.enrol import certificate_fingerprint
from crypto.he import pack_frames, unpack_frames
from crypto.he import scoring as score_he
from crypto.pki import verify_peer_certificate
from crypto.pseudonym import split
from crypto.score_wire import (
    SETUP_DOMAIN,
    ids_digest,
    ids_seal_context,
    sealed_ids_bytes,
    setup_digest,
    setup_payload,
)
from crypto.seal import PeerKey
from models.scoring import SCORING_KINDS, FeaturePart, ScoringKind
from node.alignment import check_job_id
from node.columns import model_columns
from node.config import ScoringCaps
from node.scoring.budget import BudgetBook, Charge
from node.scoring.index import Evaluate, PseudonymIndex
from node.snapshot import Snapshot
from node.state import NodeState
from proto.fedcredit.v1 import coordinator_pb2, coordinator_pb2_grpc, node_pb2


@dataclass(frozen=True)
class BankSetup:
    """What a requesting bank set up at this node for one model."""

    bank: str
    part: FeaturePart
    context: ts.Context
    columns: np.ndarray  # this node's table, the model's columns in the model's order
    snapshot: str  # the data snapshot `columns` were taken from
    cert_pem: bytes  # the bank's certificate, pinned here (empty in insecure mode)
    digest: str  # of the signed set-up: consent records name it
    sealer_public: bytes  # the bank's sealing key, verified against its pinned certificate


@dataclass(frozen=True)
class Admitted:
    """One request that passed every check, its ids charged to the bank's budget."""

    header: node_pb2.ScorePartialHeader
    job: str
    setup: BankSetup
    snapshot: Snapshot  # the request uses this one whole
    pseudonyms: bytes  # as the bank sealed them (16 bytes each)
    rows: np.ndarray  # our table's row of each id; -1: not held here, or refused
    refused: np.ndarray  # ids refused alone (budget, model versions)
    model_request: bytes


def scoring_kind(algorithm: str) -> ScoringKind:
    kind = SCORING_KINDS.get(algorithm)
    if kind is None:
        raise ProtocolError(f"no joint scoring for models of algorithm {algorithm!r}")
    return kind


class FeatureScoring:
    """A feature node's scoring handlers, with the banks' set-ups and the caps' counters."""

    def __init__(self, state: NodeState, caps: ScoringCaps | None = None, *,
                 evaluate: Evaluate | None = None) -> None:
        """`caps` by default from the node's config (`[scoring]`); `evaluate` raises blinded
        points to the network's pseudonym key, by default the coordinator's EvaluatePseudonyms
        (a unit test passes the key itself)."""
        self.state = state
        self.caps = caps if caps is not None else state.config.scoring
        self.setups: dict[tuple[str, str], BankSetup] = {}
        self._lock = threading.Lock()
        self.index = PseudonymIndex(state, evaluate or self._evaluate)

    def _evaluate(self, points: bytes) -> tuple[bytes, str]:
        """The coordinator raises our blinded points to the network's pseudonym key."""
        channel = secure_channel(self.state.config.coordinator, self.state.tls, "coordinator")
        try:
            stub = coordinator_pb2_grpc.CoordinatorServiceStub(channel)
            reply = stub.EvaluatePseudonyms(coordinator_pb2.PseudonymPoints(points=points),
                                            timeout=300)
        finally:
            channel.close()
        return reply.points, reply.key_id

    @cached_property
    def budget(self) -> BudgetBook:
        return BudgetBook(self.state.state_dir / "scoring" / "budget.sqlite", self.caps)

    def _dir(self, bank: str, job: str) -> Path:
        return self.state.state_dir / "scoring" / f"{bank}--{check_job_id(job)}"

    def _check_role(self) -> None:
        if self.state.role != "feature":
            raise ProtocolError("only feature nodes answer scoring requests")

    # set-up -------------------------------------------------------------------------------------
    def setup(self, request: node_pb2.ScoreSetupRequest) -> node_pb2.ScoreSetupReply:
        """Check the bank's signed set-up, load our part of the model under its keys, keep it,
        and have our ids indexed under the network's pseudonym key; say our ids-per-request
        cap (the bank splits its batches by it)."""
        self._check_role()
        kind = scoring_kind(request.algorithm)
        job, key = check_job_id(request.model_job), request.bank
        bank = key.party
        public = self.state.verify_peer(PeerKey(party=bank, cert_pem=key.cert_pem,
                                                sealing_pk=key.sealing_public_key,
                                                signature=key.signature), job=job)
        cert_pem = key.cert_pem if self.state.ca_pem is not None else b""
        signed = pack_frames([request.context, request.model_context, request.setup_signature,
                              public])
        self._load(bank, job, kind, signed, cert_pem)
        snapshot = self.state.snapshot()
        self.index.current(request.pseudonym_key, snapshot.table.ids)
        self.state.references.keep(job, snapshot, "scoring set-up")  # if training kept none
        folder = self._dir(bank, job)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "bank.crt").write_bytes(cert_pem)
        path, tmp = folder / "setup.bin", folder / "setup.tmp"
        tmp.write_bytes(signed)
        tmp.chmod(0o600)
        tmp.replace(path)
        self.state.audit.append("score.setup", job=job, peer=bank, purpose="joint scoring")
        return node_pb2.ScoreSetupReply(max_ids_per_request=self.caps.max_ids_per_request)

    def _load(self, bank: str, job: str, kind: ScoringKind, signed: bytes,
              cert_pem: bytes) -> BankSetup:
        try:
            context, model_context, signature, sealer_public = unpack_frames(signed,
                                                                             max_frames=4)
        except (ValueError, ProtocolError) as err:
            raise ProtocolError(f"scoring set-up is malformed: {err}") from err
        payload = setup_payload(job, bank, context, model_context)
        if cert_pem:
            try:
                verify_blob(cert_pem, SETUP_DOMAIN, payload, signature, signer=bank,
                            what="scoring set-up")
            except ConsentRefused as err:
                self.state.audit.append("score.refused", job=job, peer=bank,
                                        purpose="joint scoring", details={"reason": str(err)})
                raise ProtocolError(f"scoring set-up refused: {err}") from err
        folder = self.state.state_dir / "models" / check_job_id(job)
        if not folder.is_dir():
            raise ProtocolError(f"{self.state.party} holds no part of a model trained by job "
                                f"{job}")
        part = kind.load_feature(folder, job, model_context)
        snapshot = self.state.snapshot()
        columns = model_columns(snapshot.table, part.features, party=self.state.party,
                                model=f"the model of job {job}")
        found = BankSetup(bank=bank, part=part, columns=columns, snapshot=snapshot.version,
                          cert_pem=cert_pem,
                          context=score_he.load_context(context, private=False),
                          digest=setup_digest(payload), sealer_public=sealer_public)
        with self._lock:
            self.setups[(bank, job)] = found
        return found

    def _setup_for(self, bank: str, job: str, kind: ScoringKind) -> BankSetup:
        with self._lock:
            found = self.setups.get((bank, job))
        if found is not None:
            return found
        path = self._dir(bank, job) / "setup.bin"
        not_set_up = f"scoring of model job {job} is not set up for {bank}"
        if not path.exists():
            raise ProtocolError(not_set_up)
        try:
            cert_pem = self._stored_cert(bank, path.with_name("bank.crt"))
            return self._load(bank, job, kind, path.read_bytes(), cert_pem)
        except ProtocolError as err:  # e.g. kept by an older version: the bank sets up again
            raise ProtocolError(f"{not_set_up} (stored set-up unreadable: {err})") from err

    def _on_snapshot(self, setup: BankSetup, job: str, snapshot: Snapshot) -> BankSetup:
        """The set-up with the model's columns of `snapshot` (taken again after a reload)."""
        if setup.snapshot == snapshot.version:
            return setup
        columns = model_columns(snapshot.table, setup.part.features, party=self.state.party,
                                model=f"the model of job {job}")
        found = replace(setup, columns=columns, snapshot=snapshot.version)
        with self._lock:
            self.setups[(setup.bank, job)] = found
        return found

    def _stored_cert(self, bank: str, path: Path) -> bytes:
        """The bank's certificate kept with its set-up, if still the one pinned here."""
        if self.state.ca_pem is None:
            return b""
        cert_pem = path.read_bytes() if path.exists() else b""
        if not cert_pem or certificate_fingerprint(cert_pem) != self.state.config.trust.peers.get(
                bank):
            raise ProtocolError(f"no certificate of {bank} pinned here is kept with its set-up")
        verify_peer_certificate(self.state.ca_pem, cert_pem, bank)
        return cert_pem

    def _check_consent(self, setup: BankSetup, header: node_pb2.ScorePartialHeader,
                       job: str, salt: bytes, pseudonyms: bytes) -> None:
        """Refuse (and audit) a request whose consent is not a record signed by the bank."""
        if not setup.cert_pem:  # insecure development mode: no certificates to check with
            return
        try:
            verify_consent(setup.cert_pem, header.consent_record, header.consent_signature,
                           bank=setup.bank, model_job=job, purpose=header.purpose,
                           reference=header.consent.strip(), setup=setup.digest,
                           pseudonyms=(salt, pseudonyms))
        except ConsentRefused as err:
            self.refuse(job, header, f"consent: {err}", pseudonyms)

    def refuse(self, job: str, header: node_pb2.ScorePartialHeader, reason: str,
               pseudonyms: bytes = b"", *, cap: str = "",
               retry_after_s: int | None = None) -> NoReturn:
        """Audit a refused request and raise, saying why: `CapExceeded` (RESOURCE_EXHAUSTED,
        naming this node and the `[scoring]` cap) when one of our caps refused it."""
        self.state.audit.append("score.refused", job=job, peer=header.bank,
                                consent=header.consent.strip(), purpose=header.purpose,
                                rows=header.ids, details={"reason": reason, **(
                                    {"ids_digest": ids_digest(pseudonyms)} if pseudonyms
                                    else {})})
        if cap:
            raise CapExceeded(f"refused: {reason}", party=self.state.party, cap=cap,
                              retry_after_s=retry_after_s)
        raise ProtocolError(f"refused: {reason}")

    def _open_ids(self, setup: BankSetup, header: node_pb2.ScorePartialHeader, job: str,
                  sealed: bytes) -> tuple[bytes, bytes]:
        """(salt, pseudonyms) the bank sealed to us for this request."""
        try:
            opened = self.state.sealer_for(setup.sealer_public).open(sealed, ids_seal_context(
                job, setup.bank, self.state.party, header.request_no))
        except ProtocolError as err:
            self.refuse(job, header, f"sealed pseudonyms: {err}")
        return opened[:SALT_BYTES], opened[SALT_BYTES:]

    def _audit_caps(self, job: str, header: node_pb2.ScorePartialHeader, charge: Charge,
                    pseudonyms: bytes) -> None:
        """Audit the ids refused alone, one entry per cap they met."""
        caps = self.caps
        for ids, reason in (
                (charge.over_budget, f"query budget spent: {caps.daily_budget} answers about "
                 f"one enterprise a day ([scoring] daily_budget)"),
                (charge.over_versions, f"enterprise already scored with "
                 f"{caps.max_model_versions} other model version(s) in "
                 f"{caps.model_period_days} day(s) ([scoring] max_model_versions)")):
            if ids:
                self.state.audit.append(
                    "score.refused", job=job, peer=header.bank, consent=header.consent.strip(),
                    purpose=header.purpose, rows=len(ids),
                    details={"reason": reason, "ids_digest": ids_digest(pseudonyms)})

    # one request ----------------------------------------------------------------------------
    def admit(self, messages: Iterable[node_pb2.ScorePartialRequest],
              what: str = "scoring request", *, model_request: bool = True) -> Admitted:
        """One request read and checked, and its ids charged (the caps, consent and budget
        above); shared by scoring and data alerts (`node.monitoring.alerts`, which takes no
        model request: `model_request=False` refuses one before anything is charged)."""
        self._check_role()
        header, rest = split_header(messages, what)
        kind = scoring_kind(header.algorithm)
        bank, job = header.bank, check_job_id(header.model_job)
        if not header.consent.strip():
            self.refuse(job, header, f"no consent reference: a {what} needs the "
                        "enterprise's consent reference")
        snapshot = self.state.snapshot()  # this request uses this one whole, whatever loads next
        setup = self._on_snapshot(self._setup_for(bank, job, kind), job, snapshot)
        if not 0 < header.ids <= MAX_SCORE_IDS:
            raise ProtocolError(f"a {what} names 1 to {MAX_SCORE_IDS} ids, not {header.ids}")
        if header.ids > self.caps.max_ids_per_request:
            self.refuse(job, header, f"{header.ids} ids in one request; this node answers at "
                        f"most {self.caps.max_ids_per_request} ([scoring] max_ids_per_request)",
                        cap="max_ids_per_request")
        if header.model_request_bytes > (MAX_PART_BYTES if model_request else 0):
            raise ProtocolError(f"a model request of {header.model_request_bytes} bytes is over "
                                f"the limit of {MAX_PART_BYTES if model_request else 0} for a "
                                f"{what}")
        fields, _ = read_chunks(rest, {"sealed_ids": sealed_ids_bytes(header.ids),
                                       "model_request": header.model_request_bytes}, exact=True)
        salt, blob = self._open_ids(setup, header, job, fields["sealed_ids"])
        self._check_consent(setup, header, job, salt, blob)
        hashed = split(blob)
        if len(set(hashed)) != len(hashed):
            self.refuse(job, header, f"{len(hashed) - len(set(hashed))} pseudonym(s) repeated "
                        f"in one request", blob)
        index = self.index.current(header.pseudonym_key, snapshot.table.ids)
        used = self.budget.count_request(bank)
        if used is not None:
            self.refuse(job, header, f"{bank} has had {used} scoring requests answered today; "
                        f"this node answers at most {self.caps.max_requests_per_day} a day "
                        f"([scoring] max_requests_per_day)", blob, cap="max_requests_per_day",
                        retry_after_s=seconds_to_next_utc_day())
        charge = self.budget.charge(bank, hashed, job)
        self._audit_caps(job, header, charge, blob)
        over = charge.refused
        refused = (np.fromiter((h in over for h in hashed), dtype=bool, count=len(hashed))
                   if over else np.zeros(len(hashed), dtype=bool))
        rows = np.fromiter((index.get(h, -1) for h in hashed), dtype=np.int64,
                           count=len(hashed))
        rows[refused] = -1  # a refused id gets neutral parts: nothing of ours for it
        return Admitted(header=header, job=job, setup=setup, snapshot=snapshot, pseudonyms=blob,
                        rows=rows, refused=refused, model_request=fields["model_request"])

    def partial(self, messages: Iterable[node_pb2.ScorePartialRequest],
                ) -> Iterator[node_pb2.ScorePartialReply]:
        """Our encrypted answer for each requested keyed-hash id."""
        asked = self.admit(messages)
        header, setup, snapshot, rows = asked.header, asked.setup, asked.snapshot, asked.rows
        present = rows >= 0
        values = setup.columns[np.where(present, rows, 0)]
        logits, part = setup.part.partial(header.request_no, values, present,
                                          asked.model_request)
        partials = pack_frames(score_he.encrypt_partials(setup.context, logits,
                                                         present.astype(float)))
        self.state.audit.append(
            "score", job=asked.job, peer=header.bank, consent=header.consent.strip(),
            purpose=header.purpose, rows=len(rows),
            details={"ids_digest": ids_digest(asked.pseudonyms), "covered": int(present.sum()),
                     "consent_signature": ids_digest(header.consent_signature),
                     "snapshot": snapshot.version})
        yield node_pb2.ScorePartialReply(snapshot=snapshot.version.encode())
        yield from chunked(partials, lambda c: node_pb2.ScorePartialReply(partials=c))
        yield from chunked(part, lambda c: node_pb2.ScorePartialReply(model_part=c))
        if asked.refused.any():
            yield from chunked(np.packbits(asked.refused).tobytes(),
                               lambda c: node_pb2.ScorePartialReply(refused_budget=c))

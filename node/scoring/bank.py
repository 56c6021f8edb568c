"""The requesting bank's side of joint scoring: its own keys, its own part, its credit policy.

Runs on the bank's premises with the bank node's config, certificate and state directory (the
`fedcredit score` command, or a bank service): the decrypted result never leaves the bank.
Keys are made once per model job and kept 0600 in `scoring/<job>/`: the CKKS key pair for the
feature nodes' summed partial logits and coverage (`bank.key`, SEAL serialisation) and the
model's own scoring key if it has one (SecureBoost: `bank.bfv`, a BFV key of the bank's own,
never the training key). The set-up (public contexts) is signed with the bank's certificate key
and given to every feature node alike, once at start. Ids travel as pseudonyms the bank cannot
choose (`crypto.pseudonym`: evaluated blinded by the coordinator, kept in a bounded cache here),
sealed to each feature node with a fresh salt that the signed consent record's digest covers.
A batch goes as requests of at most the smallest `max_ids_per_request` of the model's feature
nodes (each says its own at set-up, the coordinator relays the smallest), each with its own
consent record; a node's cap refusing a request is a `CapExceeded` naming the node and the cap.
What differs between models is behind `models.scoring.SCORING_KINDS`; reason codes are the
bank's own features with the largest weight towards default; an enterprise the bank does not
know gets "no history at this bank", one no party holds gets outcome "refer" (no grade), one the
network refused gets outcome "refused".
"""

from __future__ import annotations

import itertools
import os
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import tenseal as ts

from common.audit import AuditLog
from common.chunks import chunked
from common.errors import ProtocolError
from common.limits import MAX_PART_BYTES, MAX_SCORE_IDS
from common.tls import TlsFiles, secure_channel
from crypto import seal
from crypto.consent import ConsentRecord, pseudonyms_digest, sign_blob, sign_consent
from crypto.he import scoring as score_he
from crypto.he import unpack_frames
from crypto.pseudonym import PSEUDONYM_BYTES
from crypto.psi_pool import PsiWorkers
from crypto.score_wire import (
    SETUP_DOMAIN,
    ids_digest,
    ids_seal_context,
    setup_digest,
    setup_payload,
)
from models.scoring import SCORING_KINDS, BankPart
from node.alignment import check_job_id
from node.config import NodeConfig
from node.datasource import NodeTable
from node.policy import CreditPolicy
from node.scoring.bank_table import BankRows, FollowsTable
from node.scoring.outcome import Decision, decision_of, refused_bits
from node.scoring.pseudonym_cache import PseudonymCache, cache_path
from node.scoring.request import SCORE_DEADLINE_S, Request, in_batches, send
from node.scoring.warm import PseudonymSource
from node.trust import verify_pinned
from proto.fedcredit.v1 import coordinator_pb2, coordinator_pb2_grpc

DEFAULT_CONSENT_SECONDS = 86400.0
NO_HISTORY = ("no history at this bank",)


Features = Mapping[str, float | None]
MAX_NODES = 64  # snapshot versions read from one answer
"""An applicant's bank-side values by feature name (None: missing), overriding the table's."""

class BankScorer(FollowsTable):
    """Scores enterprises jointly: each feature node's part arrives encrypted under our key.

    Safe to share between threads (the decision service does): local HE work and set-ups are
    serialised by locks, the network leg of concurrent requests runs in parallel.
    """

    def __init__(self, config: NodeConfig, policy: CreditPolicy, *, model_id: str = "",
                 insecure: bool = False, table: NodeTable | None = None) -> None:
        if config.role != "label":
            raise ProtocolError(f"{config.party} is a feature node; only a bank requests scores")
        self.config = config
        self.party = config.party
        self.policy = policy
        self.state_dir = Path(config.state_dir)
        self.tls = None if insecure else TlsFiles(ca=config.tls.ca, cert=config.tls.cert,
                                                  key=config.tls.key)
        self._key_pem = self.tls.read()[2] if self.tls is not None else None  # signs consent
        self.channel = secure_channel(config.coordinator, self.tls, "coordinator")
        self.stub = coordinator_pb2_grpc.CoordinatorServiceStub(self.channel)
        self.audit = AuditLog(self.state_dir / "audit.jsonl", actor=self.party)
        self.sealing_key = seal.SealingKey.load_or_create(self.state_dir / "sealing.key")
        model = self.stub.ResolveScoringModel(coordinator_pb2.ResolveScoringModelRequest(
            bank=self.party, model_id=model_id), timeout=SCORE_DEADLINE_S)
        self.model_id: str = model.model_id
        self.job: str = check_job_id(model.model_job)
        self.algorithm: str = model.algorithm
        self.feature_nodes = list(model.feature_nodes)
        kind = SCORING_KINDS.get(self.algorithm)
        if kind is None:
            raise ProtocolError(f"model {self.model_id} is {self.algorithm}; this scorer serves "
                                f"{', '.join(sorted(SCORING_KINDS))} models")
        self.context = self._keys()
        key_path = self.state_dir / "scoring" / self.job / kind.key_file if kind.key_file else None
        own_key = key_path.read_bytes() if key_path is not None and key_path.exists() else b""
        self.part: BankPart = kind.load_bank(self.state_dir / "models" / self.job, self.job,
                                             own_key)
        self.follow_table(config, table, self.part.features, policy.credit_line.basis_column,
                          f"model {self.model_id} (job {self.job})")  # our live rows
        if key_path is not None and not own_key:
            _write_private(key_path, self.part.private_key)
        self._requests = itertools.count(secrets.randbelow(2**31))
        self._he_lock = threading.Lock()  # our TenSEAL context and the model part
        self._setup_lock = threading.Lock()
        self.setup_digest = ""  # of the set-up we signed and gave every feature node
        self.max_ids = MAX_SCORE_IDS  # ids in one request: the feature nodes' smallest cap
        self.sealers = self._sealers()
        self.workers = PsiWorkers()  # hashing and blinding of large batches, on every core
        self.cache = PseudonymCache(cache_path(self.state_dir))
        self.source = PseudonymSource(self.stub, self.cache, self.workers)
        self.setup()  # once at start: every feature node holds this signed set-up

    def close(self) -> None:
        self.stop_following()
        self.channel.close()
        self.workers.close()
        self.cache.close()

    def _keys(self) -> ts.Context:
        """Our CKKS scoring key pair for this model, made once, kept 0600."""
        key_path = self.state_dir / "scoring" / self.job / "bank.key"
        if key_path.exists():
            return score_he.load_context(key_path.read_bytes(), private=True)
        ctx = score_he.new_private_context()
        _write_private(key_path, score_he.private_bytes(ctx))
        return ctx

    def _sealers(self) -> dict[str, seal.Sealer]:
        """A sealer to each feature node's sealing key, once verified against its pinned
        certificate (in insecure mode: as the coordinator gave it)."""
        ca_pem = self.tls.read()[0] if self.tls else None
        sealers = {}
        for peer in self.feature_nodes:
            public = peer.sealing_public_key
            if ca_pem is not None:
                public = verify_pinned(self.party, self.config.trust.peers, ca_pem, seal.PeerKey(
                    party=peer.party, cert_pem=peer.cert_pem, sealing_pk=public,
                    signature=peer.signature), self.audit, job=self.job)
            sealers[peer.party] = seal.Sealer(self.sealing_key.private_key, public)
        return sealers

    @property
    def input_features(self) -> tuple[str, ...]:
        """The bank-side fields a request may give: the model's and the credit-line basis."""
        basis = self.policy.credit_line.basis_column
        extra = (basis,) if basis in self.table.features and basis not in self.part.features else ()
        return (*self.part.features, *extra)

    def setup(self) -> None:
        """Give every feature node our public contexts, signed, through the coordinator."""
        with self._setup_lock:
            self._setup()

    def _setup(self) -> None:
        context, model_context = score_he.public_bytes(self.context), self.part.public_context
        payload = setup_payload(self.job, self.party, context, model_context)
        self.setup_digest = setup_digest(payload)
        signature = (sign_blob(self._key_pem, SETUP_DOMAIN, payload, signer=self.party)
                     if self._key_pem is not None else b"")
        header = coordinator_pb2.ScoreSetupHeader(
            bank=self.party, model_id=self.model_id, model_job=self.job,
            context_bytes=len(context), model_context_bytes=len(model_context),
            setup_signature=signature)

        def upload() -> Iterator[coordinator_pb2.ScoreSetupUpload]:
            yield coordinator_pb2.ScoreSetupUpload(header=header)
            yield from chunked(context, lambda c: coordinator_pb2.ScoreSetupUpload(context=c))
            yield from chunked(model_context,
                               lambda c: coordinator_pb2.ScoreSetupUpload(model_context=c))

        reply = self.stub.ScoreSetup(upload(), timeout=SCORE_DEADLINE_S)
        said = reply.max_ids_per_request  # the smallest of the feature nodes' caps (0: unsaid)
        self.max_ids = min(said, MAX_SCORE_IDS) if said > 0 else MAX_SCORE_IDS

    def pseudonyms(self, ids: Sequence[str]) -> bytes:
        """The network's pseudonyms of `ids` (16 bytes each, in order)."""
        return self._pseudonyms_under_key(ids)[0]

    def _pseudonyms_under_key(self, ids: Sequence[str]) -> tuple[bytes, str]:
        """The pseudonyms of `ids` and the id of the key they were made under (cached ones,
        the rest evaluated blinded by the coordinator: `node.scoring.warm`)."""
        return self.source.under_key(ids)

    def warm(self, ids: Sequence[str]) -> int:
        """Make ahead the pseudonyms of those of `ids` not kept yet; how many were made."""
        return self.source.warm(ids)

    def _seal_ids(self, pseudonyms: bytes, salt: bytes, number: int) -> dict[str, bytes]:
        """The request's salt and pseudonyms sealed to each feature node, the same list to
        each (the consent record's digest covers it, and every node checks that digest)."""
        return {node: sealer.seal(salt + pseudonyms, ids_seal_context(
            self.job, self.party, node, number)) for node, sealer in self.sealers.items()}

    def own_inputs(self, ids: Sequence[str], features: Sequence[Features | None] | None,
                   view: BankRows | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Our model columns for each id (table row, then the request's values over them),
        whether we hold anything of it, and the credit-line basis. Names are checked by the
        caller (the decision service's request model); an unknown one here is a bug."""
        view = view or self.view  # one snapshot for the whole request
        rows = np.fromiter((view.row_of.get(i, -1) for i in ids), dtype=np.int64,
                           count=len(ids))
        present = rows >= 0
        own_rows = view.own[np.where(present, rows, 0)].copy()
        basis = np.where(present, view.basis[np.where(present, rows, 0)], np.nan)
        if features is not None:
            column = {name: j for j, name in enumerate(self.part.features)}
            basis_name = self.policy.credit_line.basis_column
            for k, given in enumerate(features):
                if not given:
                    continue
                if not present[k]:
                    own_rows[k] = np.nan
                present[k] = True
                for name, value in given.items():
                    number = np.nan if value is None else float(value)
                    if name in column:
                        own_rows[k, column[name]] = number
                    if name == basis_name:
                        basis[k] = number
        return own_rows, present, basis

    def consent(self, salt: bytes, pseudonyms: bytes, reference: str, purpose: str,
                expires_unix: float) -> tuple[bytes, bytes]:
        """The consent record for these pseudonyms under our set-up, signed with our
        certificate key (unsigned in insecure mode, where nobody could check it)."""
        record = ConsentRecord(pseudonyms=pseudonyms_digest(salt, pseudonyms), bank=self.party,
                               model_job=self.job, setup=self.setup_digest, purpose=purpose,
                               reference=reference, expires_unix=int(expires_unix))
        if self._key_pem is None:
            return record.encode(), b""
        return record.encode(), sign_consent(self._key_pem, record)

    def _distinct(self, ids: Sequence[str]) -> None:
        """One request names each enterprise once (every feature node refuses a repeat)."""
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            twice = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
            raise ProtocolError(f"enterprise id {twice!r} appears more than once in one request")

    def score(self, ids: Sequence[str], consent: str, purpose: str = "credit assessment",
              features: Sequence[Features | None] | None = None,
              consent_expires: float | None = None, view: BankRows | None = None,
              ) -> list[Decision]:
        """Joint decisions for `ids` (each once); refused without a consent reference.
        `features[k]`, if given, holds bank-side values for `ids[k]` over (or instead of) our
        table's row. The consent record we sign expires at `consent_expires` (Unix time;
        default in a day).

        A batch larger than the feature nodes' smallest `max_ids_per_request` (each says its
        own at set-up) goes as requests of at most that many ids, in order, each with its own
        signed consent record over its own pseudonyms; each request's sums come back only when
        every feature node answered it. A node's cap refusing a request raises `CapExceeded`
        naming the node and the cap (after a refusal by `max_ids_per_request`, the caps are
        asked again once, as a node may have lowered its own): `node.scoring.request`."""
        if not consent.strip():
            self.audit.append("score.refused", job=self.job, purpose=purpose,
                              details={"reason": "no consent reference"})
            raise ProtocolError("a scoring request needs the enterprise's consent reference")
        if features is not None and len(features) != len(ids):
            raise ProtocolError(f"{len(features)} feature sets for {len(ids)} ids")
        self._distinct(ids)
        pseudonyms, key_id = self._pseudonyms_under_key(ids)
        expires = time.time() + DEFAULT_CONSENT_SECONDS if consent_expires is None \
            else consent_expires
        view = view or self.view  # the bank's rows this request uses, whatever loads next
        own_rows, present, basis = self.own_inputs(ids, features, view)
        parts = in_batches(self, len(ids), lambda start, end: self._score_request(
            ids[start:end], pseudonyms[start * PSEUDONYM_BYTES:end * PSEUDONYM_BYTES], key_id,
            own_rows[start:end], present[start:end], basis[start:end], consent, purpose,
            expires, view.version))
        return [d for part in parts for d in part]

    def _score_request(self, ids: Sequence[str], pseudonyms: bytes, key_id: str,
                       own_rows: np.ndarray, present: np.ndarray, basis: np.ndarray,
                       consent: str, purpose: str, expires: float, version: str,
                       ) -> list[Decision]:
        """One scoring request (at most `max_ids` ids) with its own consent record."""
        number = next(self._requests) % 2**32
        with self._he_lock:
            model_request = self.part.request(number, own_rows, present)
        request = Request(ids, pseudonyms, key_id, number, consent, purpose, expires,
                          model_request)
        try:
            reply, items = send(self, self.stub.Score, request, {
                "sums": MAX_PART_BYTES, "model_sum": MAX_PART_BYTES,
                "refused_budget": (len(ids) + 7) // 8}, {"snapshot": MAX_NODES}, "score")
        except BaseException:
            with self._he_lock:
                self.part.discard(number)  # no answer will come for this request
            raise
        versions = tuple((v.party, v.version) for v in items["snapshot"])
        with self._he_lock:
            others, covered = score_he.decrypt_sums(self.context, unpack_frames(reply["sums"]),
                                                    len(ids))
            logits, weights = self.part.finish(number, own_rows, present, others,
                                               reply["model_sum"])
        probability = 1.0 / (1.0 + np.exp(-logits))
        scores = self.policy.scores(probability)
        grades = self.policy.grade_index(scores)
        lines = self.policy.lines(grades, basis)
        reasons = self._reasons(weights, present)
        self.audit.append("score", job=self.job, consent=consent, purpose=purpose,
                          rows=len(ids), details={"model": self.model_id,
                                                  "ids_digest": ids_digest(request.pseudonyms)})
        refused = refused_bits(reply["refused_budget"], len(ids))
        coverage = (covered + present).astype(int).tolist()
        snapshots = ((self.party, version), *versions)
        names = [self.policy.grades[g].grade for g in range(len(self.policy.grades))]
        return [decision_of(ident, p, s, names[g], line, c, why, no, snapshots)
                for ident, p, s, g, line, c, why, no in zip(
                    ids, probability.tolist(), scores.tolist(), grades.tolist(), lines.tolist(),
                    coverage, reasons, refused.tolist(), strict=True)]

    def _reasons(self, weights: np.ndarray, present: np.ndarray) -> list[tuple[str, ...]]:
        """The bank's own features pushing each enterprise most towards default."""
        k = self.policy.reason_codes
        if k == 0:
            return [()] * len(present)
        order = np.argsort(-weights, axis=1)[:, :k]
        names = self.part.reason_names
        return [tuple(names[j] for j in order[i] if weights[i, j] > 0) if present[i]
                else NO_HISTORY for i in range(len(present))]


def _write_private(path: Path, data: bytes) -> None:
    """Write a key file readable by its owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(path.with_suffix(".tmp"), path)

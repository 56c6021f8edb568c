"""Feature node side of joint scoring (DESIGN §3.5): sealed set-up, keyed-hash lookup, budget,
encrypted parts.

`setup` opens a bank's set-up (sealed to this node, bound to the model job and direction) and
indexes this node's ids under the bank's id key, keeping the bank's pinned certificate;
`partial` answers one request: a consent record signed by that certificate's key, unexpired and
about exactly these ids, required and logged (`crypto.consent`; a refusal audited), the bank's
daily budget per enterprise charged (an id over it is refused on its
own: neutral parts and a bit in `refused_budget`), then the model's part
(`models.scoring.SCORING_KINDS[algorithm]`) beside CKKS (partial logit, coverage) ciphertexts
under the bank's key. No gRPC here: node.server calls these handlers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import tenseal as ts

from common.chunks import chunked, read_chunks, split_header
from common.errors import ProtocolError
from common.limits import HASHED_ID_BYTES, MAX_PART_BYTES, MAX_SCORE_IDS
from crypto.consent import ConsentRefused, verify_consent
from crypto.enrol import certificate_fingerprint
from crypto.he import pack_frames
from crypto.he import scoring as score_he
from crypto.pki import verify_peer_certificate
from crypto.seal import PeerKey
from models.scoring import SCORING_KINDS, FeaturePart, ScoringKind
from node.alignment import check_job_id
from node.columns import model_columns
from node.scoring.budget import DEFAULT_DAILY_BUDGET, BudgetBook
from node.scoring.wire import (
    ScoringSetup,
    hash_ids,
    ids_digest,
    setup_seal_context,
    split_ids,
)
from node.state import NodeState
from proto.fedcredit.v1 import node_pb2


@dataclass(frozen=True)
class BankSetup:
    """What a requesting bank set up at this node for one model."""

    bank: str
    part: FeaturePart
    context: ts.Context
    index: dict[bytes, int]
    columns: np.ndarray  # this node's table, the model's columns in the model's order
    cert_pem: bytes  # the bank's certificate, pinned here (empty in insecure mode)


def scoring_kind(algorithm: str) -> ScoringKind:
    kind = SCORING_KINDS.get(algorithm)
    if kind is None:
        raise ProtocolError(f"no joint scoring for models of algorithm {algorithm!r}")
    return kind


class FeatureScoring:
    """A feature node's scoring handlers, with the banks' set-ups and the query budget."""

    def __init__(self, state: NodeState, daily_budget: int = DEFAULT_DAILY_BUDGET) -> None:
        self.state = state
        self.daily_budget = daily_budget
        self.setups: dict[tuple[str, str], BankSetup] = {}
        self._lock = threading.Lock()

    @cached_property
    def budget(self) -> BudgetBook:
        return BudgetBook(self.state.state_dir / "scoring" / "budget.sqlite", self.daily_budget)

    def _dir(self, bank: str, job: str) -> Path:
        return self.state.state_dir / "scoring" / f"{bank}--{check_job_id(job)}"

    def _check_role(self) -> None:
        if self.state.role != "feature":
            raise ProtocolError("only feature nodes answer scoring requests")

    # set-up -------------------------------------------------------------------------------------
    def setup(self, request: node_pb2.ScoreSetupRequest) -> node_pb2.ScoreSetupReply:
        """Open the bank's sealed set-up, load our part of the model under its keys, keep it."""
        self._check_role()
        kind = scoring_kind(request.algorithm)
        job, key = check_job_id(request.model_job), request.bank
        bank, me = key.party, self.state.party
        public = self.state.verify_peer(PeerKey(party=bank, cert_pem=key.cert_pem,
                                                sealing_pk=key.sealing_public_key,
                                                signature=key.signature), job=job)
        opened = self.state.sealer_for(public).open(request.sealed_setup,
                                                    setup_seal_context(job, bank, me))
        cert_pem = key.cert_pem if self.state.ca_pem is not None else b""
        self._load(bank, job, kind, ScoringSetup.decode(opened), cert_pem)
        folder = self._dir(bank, job)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "bank.crt").write_bytes(cert_pem)
        path, tmp = folder / "setup.bin", folder / "setup.tmp"
        tmp.write_bytes(opened)
        tmp.chmod(0o600)
        tmp.replace(path)
        self.state.audit.append("score.setup", job=job, peer=bank, purpose="joint scoring")
        return node_pb2.ScoreSetupReply()

    def _load(self, bank: str, job: str, kind: ScoringKind, setup: ScoringSetup,
              cert_pem: bytes) -> BankSetup:
        folder = self.state.state_dir / "models" / check_job_id(job)
        if not folder.is_dir():
            raise ProtocolError(f"{self.state.party} holds no part of a model trained by job "
                                f"{job}")
        part = kind.load_feature(folder, job, setup.model_context)
        columns = model_columns(self.state.table, part.features, party=self.state.party,
                                model=f"the model of job {job}")
        hashed = hash_ids(setup.id_key, self.state.table.ids)
        index = {hashed[i * HASHED_ID_BYTES:(i + 1) * HASHED_ID_BYTES]: i
                 for i in range(self.state.table.rows)}
        found = BankSetup(bank=bank, part=part, index=index, columns=columns, cert_pem=cert_pem,
                          context=score_he.load_context(setup.context, private=False))
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
            setup = ScoringSetup.decode(path.read_bytes())
            cert_pem = self._stored_cert(bank, path.with_name("bank.crt"))
        except ProtocolError as err:  # e.g. kept by an older version: the bank sets up again
            raise ProtocolError(f"{not_set_up} (stored set-up unreadable: {err})") from err
        return self._load(bank, job, kind, setup, cert_pem)

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
                       job: str, blob: bytes) -> None:
        """Refuse (and audit) a request whose consent is not a record signed by the bank."""
        if not setup.cert_pem:  # insecure development mode: no certificates to check with
            return
        try:
            verify_consent(setup.cert_pem, header.consent_record, header.consent_signature,
                           bank=setup.bank, model_job=job, purpose=header.purpose,
                           reference=header.consent.strip(), hashed_ids=blob)
        except ConsentRefused as err:
            self.state.audit.append("score.refused", job=job, peer=setup.bank,
                                    consent=header.consent.strip(), purpose=header.purpose,
                                    details={"reason": str(err), "ids_digest": ids_digest(blob)})
            raise ProtocolError(f"consent refused: {err}") from err

    # one request ----------------------------------------------------------------------------
    def partial(self, messages: Iterable[node_pb2.ScorePartialRequest],
                ) -> Iterator[node_pb2.ScorePartialReply]:
        """Our encrypted answer for each requested keyed-hash id."""
        self._check_role()
        header, rest = split_header(messages, "scoring request")
        kind = scoring_kind(header.algorithm)
        bank, job = header.bank, check_job_id(header.model_job)
        consent, purpose = header.consent.strip(), header.purpose
        if not consent:
            self.state.audit.append("score.refused", job=job, peer=bank, purpose="joint scoring",
                                    details={"reason": "no consent reference"})
            raise ProtocolError("a scoring request needs the enterprise's consent reference")
        setup = self._setup_for(bank, job, kind)
        if not 0 < header.ids <= MAX_SCORE_IDS:
            raise ProtocolError(f"a scoring request names 1 to {MAX_SCORE_IDS} ids, "
                                f"not {header.ids}")
        if header.model_request_bytes > MAX_PART_BYTES:
            raise ProtocolError(f"a model request of {header.model_request_bytes} bytes is over "
                                f"the limit of {MAX_PART_BYTES}")
        fields, _ = read_chunks(rest, {"hashed_ids": header.ids * HASHED_ID_BYTES,
                                       "model_request": header.model_request_bytes}, exact=True)
        blob = fields["hashed_ids"]
        hashed = split_ids(blob)
        self._check_consent(setup, header, job, blob)
        over = self.budget.charge(bank, hashed)
        refused = np.fromiter((h in over for h in hashed), dtype=bool, count=len(hashed))
        if refused.any():
            self.state.audit.append(
                "score.refused", job=job, peer=bank, consent=consent, purpose=purpose,
                rows=int(refused.sum()),
                details={"reason": f"query budget spent ({self.budget.daily_budget} a day)",
                         "ids_digest": ids_digest(blob)})
        rows = np.fromiter((setup.index.get(h, -1) for h in hashed), dtype=np.int64,
                           count=len(hashed))
        rows[refused] = -1  # a refused id gets neutral parts: nothing of ours for it
        present = rows >= 0
        values = setup.columns[np.where(present, rows, 0)]
        logits, part = setup.part.partial(header.request_no, values, present,
                                          fields["model_request"])
        partials = pack_frames(score_he.encrypt_partials(setup.context, logits,
                                                         present.astype(float)))
        self.state.audit.append(
            "score", job=job, peer=bank, consent=consent, purpose=purpose, rows=len(hashed),
            details={"ids_digest": ids_digest(blob), "covered": int(present.sum()),
                     "consent_signature": ids_digest(header.consent_signature),
                     **({"hashed_id": hashed[0].hex()} if len(hashed) == 1 else {})})
        yield from chunked(partials, lambda c: node_pb2.ScorePartialReply(partials=c))
        yield from chunked(part, lambda c: node_pb2.ScorePartialReply(model_part=c))
        if refused.any():
            yield from chunked(np.packbits(refused).tobytes(),
                               lambda c: node_pb2.ScorePartialReply(refused_budget=c))

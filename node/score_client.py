"""The requesting bank's side of joint scoring: its own key, its own part, its credit policy.

Runs on the bank's premises with the bank node's config, certificate and state directory (the
`fedcredit score` command, or a bank service): the decrypted result never leaves the bank.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tenseal as ts

from common.audit import AuditLog
from common.errors import ProtocolError
from common.parts import Payload, from_parts, write_step
from common.tls import TlsFiles, secure_channel
from crypto import score_he, seal
from crypto.ckks import unpack_frames
from models.vlr.scoring import PartyModel
from node.alignment import check_job_id
from node.config import NodeConfig
from node.datasource import NodeTable, load_table
from node.policy import CreditPolicy
from node.score_handlers import hash_ids
from node.step_handlers import seal_context
from proto.fedcredit.v1 import common_pb2, coordinator_pb2_grpc

SCORE_DEADLINE_S = 300.0


@dataclass(frozen=True)
class Decision:
    """What the bank learns about one enterprise."""

    id: str
    probability: float
    score: float
    grade: str
    credit_line: float
    parties_covering: int
    reasons: tuple[str, ...]


class BankScorer:
    """Scores enterprises jointly: each feature node's part arrives encrypted under our key."""

    def __init__(self, config: NodeConfig, policy: CreditPolicy, *, model_id: str = "",
                 insecure: bool = False, table: NodeTable | None = None) -> None:
        if config.role != "label":
            raise ProtocolError(f"{config.party} is a feature node; only a bank requests scores")
        self.config = config
        self.party = config.party
        self.policy = policy
        self.table = table or load_table(config.data, "label")
        self.state_dir = Path(config.state_dir)
        self.tls = None if insecure else TlsFiles(ca=config.tls.ca, cert=config.tls.cert,
                                                  key=config.tls.key)
        self.channel = secure_channel(config.coordinator, self.tls, "coordinator")
        self.stub = coordinator_pb2_grpc.CoordinatorServiceStub(self.channel)
        self.audit = AuditLog(self.state_dir / "audit.jsonl", actor=self.party)
        self.sealing_key = seal.SealingKey.load_or_create(self.state_dir / "sealing.key")
        self.row_of = {ident: row for row, ident in enumerate(self.table.ids)}
        self.model_info = self._call("resolve", "-", {"model_id": model_id})["model"]
        info = json.loads(self.model_info.data)
        self.model_id: str = info["model_id"]
        self.job: str = check_job_id(info["job"])
        self.features: list[str] = info["features"]
        self.peers: dict[str, Any] = info["peers"]
        self.model = PartyModel.load(self.state_dir / "models" / self.job / "model.json")
        if info["algorithm"] != "vlr":
            raise ProtocolError(f"model {self.model_id} is {info['algorithm']}; this scorer "
                                "serves logistic regression models")
        self.context, self.id_key, fresh = self._keys()
        basis = policy.credit_line.basis_column
        self.basis = (self.table.X[:, self.table.features.index(basis)]
                      if basis in self.table.features else np.full(self.table.rows, np.nan))
        if fresh:
            self.setup()

    def close(self) -> None:
        self.channel.close()

    def _keys(self) -> tuple[ts.Context, bytes, bool]:
        """Our scoring key pair and id-hash key for this model, made once, kept 0600."""
        folder = self.state_dir / "scoring" / self.job
        key_path, id_path = folder / "bank.key", folder / "id.key"
        if key_path.exists() and id_path.exists():
            return (score_he.load_context(key_path.read_bytes(), private=True),
                    id_path.read_bytes(), False)
        folder.mkdir(parents=True, exist_ok=True)
        ctx = score_he.new_private_context()
        id_key = secrets.token_bytes(32)
        for path, data in ((key_path, score_he.private_bytes(ctx)), (id_path, id_key)):
            fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(path.with_suffix(".tmp"), path)
        return ctx, id_key, True

    def _header(self, step: str, job: str, settings: dict[str, Any]) -> common_pb2.StepHeader:
        return common_pb2.StepHeader(job_id=job, algorithm="score", step=step,
                                     key=f"{job}/{step}/{secrets.token_hex(8)}",
                                     config_json=json.dumps({"bank": self.party, **settings}))

    def _call(self, step: str, job: str, settings: dict[str, Any],
              payloads: Sequence[Payload] = ()) -> dict[str, Payload]:
        header = self._header(step, job if job != "-" else "resolve", settings)
        replies = self.stub.Score(write_step(payloads, header), timeout=SCORE_DEADLINE_S)
        return from_parts(m.part for m in replies)

    def setup(self) -> None:
        """Give each feature node our public context and id key, sealed to it."""
        header = self._header("setup", self.job, {"model_id": self.model_id})
        ca_pem = self.tls.read()[0] if self.tls else None
        settings = json.dumps({"id_key": self.id_key.hex(),
                               "context": score_he.public_bytes(self.context).hex()}).encode()
        payloads = [Payload(name="context", data=score_he.public_bytes(self.context))]
        for name in self.features:
            peer = self.peers[name]
            public = bytes.fromhex(peer["sealing_public_key"])
            if ca_pem is not None:
                public = seal.verify_peer_key(ca_pem, seal.PeerKey(
                    party=name, cert_pem=peer["cert_pem"].encode(), sealing_pk=public,
                    signature=bytes.fromhex(peer["signature"])))
            sealer = seal.Sealer(self.sealing_key.private_key, public)
            payloads.append(Payload(
                name=f"setup:{name}", sender=self.party, recipient=name, sealed=True,
                data=sealer.seal(settings, seal_context(header, f"setup:{name}", self.party,
                                                        name))))
        replies = self.stub.Score(write_step(payloads, header), timeout=SCORE_DEADLINE_S)
        from_parts(m.part for m in replies)

    def score(self, ids: Sequence[str], consent: str, purpose: str = "credit assessment",
              ) -> list[Decision]:
        """Joint decisions for `ids`; refused without a consent reference."""
        if not consent.strip():
            self.audit.append("score.refused", job=self.job, purpose=purpose,
                              details={"reason": "no consent reference"})
            raise ProtocolError("a scoring request needs the enterprise's consent reference")
        hashed = hash_ids(self.id_key, list(ids))
        settings = {"model_id": self.model_id, "consent": consent, "purpose": purpose}
        try:
            reply = self._call("score", self.job, settings, [Payload(name="ids", data=hashed)])
        except grpc.RpcError as err:
            if "is not set up" not in (err.details() or ""):
                raise
            self.setup()  # a node or the coordinator lost our set-up: give it again
            reply = self._call("score", self.job, settings, [Payload(name="ids", data=hashed)])
        others, covered = score_he.decrypt_sums(self.context, unpack_frames(reply["sums"].data),
                                                len(ids))
        rows = np.fromiter((self.row_of.get(i, -1) for i in ids), dtype=np.int64,
                           count=len(ids))
        present = rows >= 0
        own_rows = self.table.X[np.where(present, rows, 0)]
        logits = self.model.partial_logits(own_rows, present) + others
        probability = 1.0 / (1.0 + np.exp(-logits))
        scores = self.policy.scores(probability)
        grades = self.policy.grade_index(scores)
        basis = np.where(present, self.basis[np.where(present, rows, 0)], np.nan)
        lines = self.policy.lines(grades, basis)
        reasons = self._reasons(own_rows, present)
        self.audit.append("score", job=self.job, consent=consent, purpose=purpose,
                          rows=len(ids), details={"model": self.model_id,
                                                  "ids_digest": _digest(hashed)})
        return [Decision(id=ids[k], probability=float(probability[k]), score=float(scores[k]),
                         grade=self.policy.grades[grades[k]].grade, credit_line=float(lines[k]),
                         parties_covering=int(covered[k] + present[k]), reasons=reasons[k])
                for k in range(len(ids))]

    def _reasons(self, rows: np.ndarray, present: np.ndarray) -> list[tuple[str, ...]]:
        """Top bank-side features pushing each enterprise towards default (own data only)."""
        k = self.policy.reason_codes
        if k == 0:
            return [()] * len(rows)
        contributions = self.model.contributions(rows)
        order = np.argsort(-contributions, axis=1)[:, :k]
        names = self.model.features
        return [tuple(names[j] for j in order[i] if contributions[i, j] > 0) if present[i]
                else ("no history at this bank",) for i in range(len(rows))]


def _digest(blob: bytes) -> str:
    import hashlib

    return hashlib.sha256(blob).hexdigest()[:16]


def timed_single(scorer: BankScorer, ident: str, consent: str) -> float:
    """Milliseconds for one single-enterprise decision (for benchmarks and the demo)."""
    start = time.perf_counter()
    scorer.score([ident], consent)
    return (time.perf_counter() - start) * 1e3

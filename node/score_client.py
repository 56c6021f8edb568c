"""The requesting bank's side of joint scoring: its own key, its own part, its credit policy.

Runs on the bank's premises with the bank node's config, certificate and state directory (the
`fedcredit score` command, or a bank service): the decrypted result never leaves the bank.

Logistic regression models ("vlr"): the feature nodes' partial logits arrive as a CKKS sum.
SecureBoost models ("sbt"): the bank sends BFV selectors of the leaves its own splits allow under
a BFV key of its own (`scoring/<job>/bank.bfv`, 0600; never the training key), learns the leaf
each tree reaches and adds the leaf weights; coverage still comes as a CKKS sum. Reason codes for
trees: the bank's own split features on the reached paths, weighted by the reached leaf's weight
(features of trees whose leaf pushes towards default, strongest first); an enterprise the bank
does not know gets "no history at this bank".
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import secrets
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
from crypto import seal
from crypto.he import BFV_SUITE, BfvPrivate, unpack_frames
from crypto.he import scoring as score_he
from models.sbt import StepKey
from models.sbt.scoring import LabelModel, LabelScorer, leaf_paths, rows_values
from models.vlr.scoring import PartyModel
from node.alignment import check_job_id
from node.config import NodeConfig
from node.datasource import NodeTable, load_table
from node.policy import CreditPolicy
from node.score_handlers import hash_ids, ids_digest
from node.steps import seal_context
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
        self.algorithm: str = info["algorithm"]
        if self.algorithm not in ("vlr", "sbt"):
            raise ProtocolError(f"model {self.model_id} is {self.algorithm}; this scorer "
                                "serves logistic regression and SecureBoost models")
        folder = self.state_dir / "models" / self.job
        self.context, self.id_key, fresh = self._keys()
        self.model: PartyModel | None = None
        self.trees: LabelScorer | None = None
        self._requests = itertools.count(secrets.randbelow(2**31))
        if self.algorithm == "vlr":
            self.model = PartyModel.load(folder / "model.json")
        else:
            with (folder / "model.sbt").open("rb") as f:
                saved = pickle.load(f)  # noqa: S301 - the bank's own model file
            he, fresh_bfv = self._bfv_key()
            fresh = fresh or fresh_bfv
            self.trees = LabelScorer(LabelModel.from_saved(saved, he))
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
            _write_private(path, data)
        return ctx, id_key, True

    def _bfv_key(self) -> tuple[BfvPrivate, bool]:
        """Our own BFV scoring key for a SecureBoost model (not the training key), kept 0600."""
        path = self.state_dir / "scoring" / self.job / "bank.bfv"
        if path.exists():
            return BfvPrivate.from_private_bytes(path.read_bytes()), False
        he = BFV_SUITE.make_private()
        if not isinstance(he, BfvPrivate):
            raise ProtocolError("the SecureBoost suite made no persistable BFV key")
        _write_private(path, he.private_bytes())
        return he, True

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
        fields = {"id_key": self.id_key.hex(),
                  "context": score_he.public_bytes(self.context).hex()}
        payloads = [Payload(name="context", data=score_he.public_bytes(self.context))]
        if self.trees is not None:
            tree_context = self.trees.model.he.public_bytes()
            fields["sbt_context"] = tree_context.hex()
            payloads.append(Payload(name="sbt_context", data=tree_context))
        settings = json.dumps(fields).encode()
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
        settings: dict[str, Any] = {"model_id": self.model_id, "consent": consent,
                                    "purpose": purpose}
        payloads = [Payload(name="ids", data=hashed)]
        rows = np.fromiter((self.row_of.get(i, -1) for i in ids), dtype=np.int64,
                           count=len(ids))
        present = rows >= 0
        own_rows = self.table.X[np.where(present, rows, 0)]
        key = None
        if self.trees is not None:
            number = next(self._requests) % 2**32
            key = StepKey(self.job, number, 0, "score")
            settings["request_no"] = number
            payloads.append(Payload(name="request", data=self.trees.request_rows(
                key, rows_values(self.table.X, rows))))
        try:
            try:
                reply = self._call("score", self.job, settings, payloads)
            except grpc.RpcError as err:
                if "is not set up" not in (err.details() or ""):
                    raise
                self.setup()  # a node or the coordinator lost our set-up: give it again
                reply = self._call("score", self.job, settings, payloads)
        except BaseException:
            if self.trees is not None and key is not None:
                self.trees.discard(key)  # no answer will come for this request
            raise
        others, covered = score_he.decrypt_sums(self.context, unpack_frames(reply["sums"].data),
                                                len(ids))
        slots = None
        if self.trees is not None and key is not None:
            slots = self.trees.finish_leaves(key, reply["tree_sum"].data)
            logits = self.trees.margins(slots)
        else:
            assert self.model is not None
            logits = self.model.partial_logits(own_rows, present) + others
        probability = 1.0 / (1.0 + np.exp(-logits))
        scores = self.policy.scores(probability)
        grades = self.policy.grade_index(scores)
        basis = np.where(present, self.basis[np.where(present, rows, 0)], np.nan)
        lines = self.policy.lines(grades, basis)
        reasons = (self._reasons(own_rows, present) if slots is None
                   else self._tree_reasons(slots, present))
        self.audit.append("score", job=self.job, consent=consent, purpose=purpose,
                          rows=len(ids), details={"model": self.model_id,
                                                  "ids_digest": ids_digest(hashed)})
        return [Decision(id=ids[k], probability=float(probability[k]), score=float(scores[k]),
                         grade=self.policy.grades[grades[k]].grade, credit_line=float(lines[k]),
                         parties_covering=int(covered[k] + present[k]), reasons=reasons[k])
                for k in range(len(ids))]

    def _reasons(self, rows: np.ndarray, present: np.ndarray) -> list[tuple[str, ...]]:
        """Top bank-side features pushing each enterprise towards default (own data only)."""
        k = self.policy.reason_codes
        if k == 0:
            return [()] * len(rows)
        assert self.model is not None
        contributions = self.model.contributions(rows)
        order = np.argsort(-contributions, axis=1)[:, :k]
        names = self.model.features
        return [tuple(names[j] for j in order[i] if contributions[i, j] > 0) if present[i]
                else ("no history at this bank",) for i in range(len(rows))]


    def _tree_reasons(self, slots: np.ndarray, present: np.ndarray) -> list[tuple[str, ...]]:
        """Bank-side split features on the reached paths of trees whose leaf raises the
        margin, weighted by that leaf's weight, strongest first (own splits only)."""
        k = self.policy.reason_codes
        if k == 0:
            return [()] * len(slots)
        assert self.trees is not None
        weight = np.zeros((len(slots), len(self.table.features)))
        for t, tree in enumerate(self.trees.model.trees):
            paths, leaves = leaf_paths(tree.owner), tree.leaves()
            for i, slot in enumerate(slots[:, t]):
                value = float(tree.value[leaves[slot]])
                for node, _ in paths[slot]:
                    if value > 0 and tree.owner[node] == 0:
                        weight[i, tree.feature[node]] += value
        out: list[tuple[str, ...]] = []
        for i in range(len(slots)):
            order = np.argsort(-weight[i])[:k]
            out.append(tuple(self.table.features[j] for j in order if weight[i, j] > 0)
                       if present[i] else ("no history at this bank",))
        return out


def _write_private(path: Path, data: bytes) -> None:
    """Write a key file readable by its owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(path.with_suffix(".tmp"), path)


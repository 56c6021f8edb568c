"""Joint scoring at the coordinator: relay sealed set-ups, add encrypted parts; see no result.

Logistic regression: CKKS sums of partial logits. SecureBoost ("sbt" models): the bank's public
BFV context arrives at set-up (`sbt_context`; a context carrying a secret key is refused), a
request brings the bank's encrypted selectors (`request`) beside the keyed-hash ids; each feature
node gets both as one `ids` frame list, and the tree parts are added with `ScoreRelay.combine`
(`tree_sum`), the CKKS coverage vectors as before (`sums`).
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tenseal as ts

from common.audit import AuditLog
from common.errors import ProtocolError, TrustError
from common.parts import Payload
from coordinator.nodes import NodeClients
from coordinator.steps import call_step
from coordinator.store import ModelRecord, Store
from crypto.he import pack_frames, unpack_frames
from crypto.he import scoring as score_he
from models.sbt import StepKey
from models.sbt.scoring import ScoreRelay
from proto.fedcredit.v1 import common_pb2

log = logging.getLogger(__name__)

SCORE_DEADLINE_S = 120.0


class ScoringRelay:
    """Handles the requesting bank's `Score` steps: resolve, setup, score."""

    def __init__(self, store: Store, clients: NodeClients, audit: AuditLog) -> None:
        self.store = store
        self.clients = clients
        self.audit = audit
        self.contexts: dict[tuple[str, str], ts.Context] = {}
        self.relays: dict[tuple[str, str], ScoreRelay] = {}
        self.pool = ThreadPoolExecutor(max_workers=8)
        self._lock = threading.Lock()

    def handle(self, header: common_pb2.StepHeader, inputs: dict[str, Payload],
               caller: str | None, insecure: bool) -> list[Payload]:
        request: dict[str, Any] = json.loads(header.config_json or "{}")
        bank = str(request.get("bank", ""))
        if not insecure and caller != bank:
            raise TrustError(f"certificate of {caller!r} cannot score for bank {bank!r}")
        record = self.store.node(bank)
        if record is None or record.role != "label":
            raise ProtocolError(f"{bank!r} is not a registered label node")
        model = self._model(bank, str(request.get("model_id", "")))
        features = model.parties[1:]
        if header.step == "resolve":
            peers = {}
            for name in features:
                node = self._node(name)
                peers[name] = {"cert_pem": node.cert_pem.decode(),
                               "sealing_public_key": node.sealing_public_key.hex(),
                               "signature": node.signature.hex()}
            return [Payload(name="model", data=json.dumps(
                {"model_id": model.model_id, "job": model.job_id, "features": features,
                 "algorithm": model.algorithm, "peers": peers}).encode())]
        if header.job_id != model.job_id:
            raise ProtocolError(f"scoring step names job {header.job_id}, the model's is "
                                f"{model.job_id}")
        forward = {"bank": bank, "job": model.job_id}
        if header.step == "setup":
            return self._setup(header, inputs, bank, model, features, forward, record)
        if header.step == "score":
            return self._score(header, inputs, bank, model, features, request, forward)
        raise ProtocolError(f"unknown scoring step {header.step!r}")

    def _model(self, bank: str, model_id: str) -> ModelRecord:
        models = [m for m in self.store.models() if m.parties and m.parties[0] == bank]
        if model_id:
            models = [m for m in models if m.model_id == model_id]
        if not models:
            raise ProtocolError(f"no model {model_id or ''} trained with {bank} as label party")
        return max(models, key=lambda m: m.created_at)

    def _header(self, header: common_pb2.StepHeader, step: str, settings: dict[str, Any],
                peers: list[common_pb2.PeerKey] | None = None) -> common_pb2.StepHeader:
        return common_pb2.StepHeader(job_id=header.job_id, algorithm="score", step=step,
                                     epoch=header.epoch, batch=header.batch, key=header.key,
                                     config_json=json.dumps(settings), peers=peers or [])

    def _setup(self, header: common_pb2.StepHeader, inputs: dict[str, Payload], bank: str,
               model: ModelRecord, features: list[str], forward: dict[str, Any],
               record: Any) -> list[Payload]:
        context = inputs.get("context")
        if context is None:
            raise ProtocolError("scoring set-up carries no public context")
        public = score_he.load_context(context.data, private=False)  # refuses a secret key
        relay = self._tree_relay(inputs) if model.algorithm == "sbt" else None
        bank_key = common_pb2.PeerKey(party=bank, cert_pem=record.cert_pem,
                                      sealing_public_key=record.sealing_public_key,
                                      signature=record.signature)
        calls = []
        for name in features:
            payload = inputs.get(f"setup:{name}")
            if payload is None or not payload.sealed:
                raise ProtocolError(f"scoring set-up for {name} must be sealed to it")
            client = self.clients.get(self._node(name))
            calls.append(self.pool.submit(call_step, client, self._header(
                header, "setup", forward, [bank_key]), [payload], deadline_s=SCORE_DEADLINE_S))
        for call in calls:
            call.result()
        with self._lock:
            self.contexts[(bank, model.job_id)] = public
            if relay is not None:
                self.relays[(bank, model.job_id)] = relay
        self.audit.append("score.setup", job=model.job_id, peer=bank, purpose="joint scoring")
        return [Payload(name="ok", data=b"1")]

    @staticmethod
    def _tree_relay(inputs: dict[str, Payload]) -> ScoreRelay:
        """The SecureBoost relay from the bank's public BFV context (a secret key is refused:
        only the public frame layout loads)."""
        context = inputs.get("sbt_context")
        if context is None:
            raise ProtocolError("SecureBoost scoring set-up carries no public BFV context")
        return ScoreRelay(context.data)

    def _score(self, header: common_pb2.StepHeader, inputs: dict[str, Payload], bank: str,
               model: ModelRecord, features: list[str], request: dict[str, Any],
               forward: dict[str, Any]) -> list[Payload]:
        consent = str(request.get("consent", "")).strip()
        purpose = str(request.get("purpose", ""))
        ids = inputs.get("ids")
        if not consent:
            self.audit.append("score.refused", job=model.job_id, peer=bank, purpose=purpose,
                              details={"reason": "no consent reference"})
            raise ProtocolError("a scoring request needs the enterprise's consent reference")
        if ids is None or not ids.data:
            raise ProtocolError("a scoring request carries no ids")
        with self._lock:
            context = self.contexts.get((bank, model.job_id))
        if context is None:
            raise ProtocolError(f"scoring of {model.model_id} is not set up for {bank}")
        settings = {**forward, "consent": consent, "purpose": purpose}
        if model.algorithm == "sbt":
            return self._score_trees(header, inputs, bank, model, features, request, settings,
                                     context)
        answers = self._partials(header, features, settings, ids)
        sums = score_he.add_ciphertexts(context, [unpack_frames(a) for a in answers.values()])
        self._audit_score(model, bank, consent, purpose, len(ids.data) // 16, len(features))
        return [Payload(name="sums", data=pack_frames(sums))]

    def _partials(self, header: common_pb2.StepHeader, features: list[str],
                  settings: dict[str, Any], ids: Payload) -> dict[str, bytes]:
        calls = [self.pool.submit(call_step, self.clients.get(self._node(name)),
                                  self._header(header, "partial", settings), [ids],
                                  deadline_s=SCORE_DEADLINE_S, attempts=2, backoff_s=0.2)
                 for name in features]
        return {name: call.result()[f"partials:{name}"].data
                for name, call in zip(features, calls, strict=True)}

    def _audit_score(self, model: ModelRecord, bank: str, consent: str, purpose: str,
                     n_ids: int, n_features: int) -> None:
        self.audit.append("score", job=model.job_id, peer=bank, consent=consent,
                          purpose=purpose, rows=n_ids,
                          details={"model": model.model_id, "parties": n_features + 1})

    def _score_trees(self, header: common_pb2.StepHeader, inputs: dict[str, Payload],
                     bank: str, model: ModelRecord, features: list[str],
                     request: dict[str, Any], settings: dict[str, Any],
                     context: ts.Context) -> list[Payload]:
        """SecureBoost: forward ids + the bank's encrypted selectors, add the tree parts."""
        ids, selectors = inputs["ids"], inputs.get("request")
        if selectors is None or not selectors.data:
            raise ProtocolError("a SecureBoost scoring request carries no encrypted selectors")
        if len(ids.data) % 16:
            raise ProtocolError("scoring ids must be whole 16-byte keyed hashes")
        number = request.get("request_no")
        if not isinstance(number, int) or not 0 <= number < 2**32:
            raise ProtocolError("a SecureBoost scoring request needs its request number")
        with self._lock:
            relay = self.relays.get((bank, model.job_id))
        if relay is None:
            raise ProtocolError(f"scoring of {model.model_id} is not set up for {bank}")
        bundle = Payload(name="ids", data=pack_frames([ids.data, selectors.data]))
        answers = self._partials(header, features, {**settings, "request_no": number}, bundle)
        coverage, parts = [], {}
        for name, answer in answers.items():
            frames = unpack_frames(answer, max_frames=2)
            if len(frames) != 2:
                raise ProtocolError(f"{name}'s SecureBoost scoring answer is malformed")
            coverage.append(unpack_frames(frames[0]))
            parts[name] = frames[1]
        sums = score_he.add_ciphertexts(context, coverage)
        combined = relay.combine(StepKey(model.job_id, number, 0, "score"), parts)
        self._audit_score(model, bank, str(settings["consent"]), str(settings["purpose"]),
                          len(ids.data) // 16, len(features))
        return [Payload(name="sums", data=pack_frames(sums)),
                Payload(name="tree_sum", data=combined)]

    def _node(self, name: str) -> Any:
        record = self.store.node(name)
        if record is None:
            raise ProtocolError(f"feature node {name!r} is not registered")
        return record

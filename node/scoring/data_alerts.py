"""The bank's side of data alerts: one aggregate early-warning level per enterprise it asks about.

Uses the bank's scoring set-up of a model (`BankScorer`: its CKKS key, its pseudonyms, its
signed consent records, the sealed lists): the request is a scoring request without a model
request, sent to the coordinator's `DataAlerts`. The answer is the sum over the model's feature
nodes of their levels (each node's own limits on its own data, `node.monitoring.alerts`),
decrypted here: the bank learns that sum per enterprise (shown as one level, capped at red) and
no node's share of it, and for each feature node the PSI of each of its features over its own
rows. A refused id (daily budget spent) gets no level.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np

from common.chunks import CHUNK_BYTES, read_chunks
from common.limits import MAX_PART_BYTES
from crypto.consent import SALT_BYTES
from crypto.he import scoring as score_he
from crypto.he import unpack_frames
from crypto.score_wire import STALE_KEY, ids_digest, sealed_ids_bytes
from node.monitoring.limits import level_name
from node.scoring.bank import (
    DEFAULT_CONSENT_SECONDS,
    MAX_NODES,
    SCORE_DEADLINE_S,
    BankScorer,
)
from node.scoring.outcome import refused_bits
from proto.fedcredit.v1 import coordinator_pb2

SOURCE = "feature data"
MAX_STABILITY = 4096  # per-feature PSI items read from one answer


@dataclass(frozen=True)
class DataAlertLevels:
    """What the bank learns from one data-alert request."""

    ids: list[str]
    level_sum: np.ndarray  # Σ over feature nodes of their levels; -1 where refused
    refused: np.ndarray
    snapshots: tuple[tuple[str, str], ...] = ()
    stability: dict[str, dict[str, Any]] = field(default_factory=dict)
    """party -> {"reference", "current", "features": {feature: {"psi", "band"}}}."""

    def level(self, k: int) -> str:
        """Enterprise k's aggregate level as a name ("none", "yellow", "orange", "red")."""
        return "refused" if self.refused[k] else level_name(int(self.level_sum[k]))


def request_data_alerts(scorer: BankScorer, ids: Sequence[str], consent: str,
                        purpose: str = "portfolio monitoring") -> DataAlertLevels:
    """The aggregate data-alert level of each of `ids` (each once) under `scorer`'s model,
    asked in requests of at most the feature nodes' smallest `max_ids_per_request` (as
    `BankScorer.score` splits a batch); each node's per-feature PSI is the same in every
    answer (it is over the node's own rows), so the first answer's is kept."""
    ids = list(ids)
    scorer._distinct(ids)
    parts = [_request(scorer, ids[start:start + scorer.max_ids], consent, purpose)
             for start in range(0, len(ids), scorer.max_ids)]
    if len(parts) <= 1:
        return parts[0] if parts else DataAlertLevels(
            ids=[], level_sum=np.zeros(0, dtype=np.int64), refused=np.zeros(0, dtype=bool))
    return DataAlertLevels(ids=ids, level_sum=np.concatenate([p.level_sum for p in parts]),
                           refused=np.concatenate([p.refused for p in parts]),
                           snapshots=parts[-1].snapshots, stability=parts[0].stability)


def _request(scorer: BankScorer, ids: list[str], consent: str, purpose: str,
             ) -> DataAlertLevels:
    """One data-alert request, within the nodes' caps."""
    pseudonyms, key_id = scorer._pseudonyms_under_key(ids)
    expires = time.time() + DEFAULT_CONSENT_SECONDS
    number = next(scorer._requests) % 2**32

    def ask() -> tuple[dict[str, bytes], dict[str, list[Any]]]:
        nonlocal pseudonyms, key_id
        if key_id != scorer.cache.key_id:
            pseudonyms, key_id = scorer._pseudonyms_under_key(ids)
        salt = secrets.token_bytes(SALT_BYTES)
        record, signature = scorer.consent(salt, pseudonyms, consent.strip(), purpose, expires)
        header = coordinator_pb2.ScoreRequestHeader(
            bank=scorer.party, model_id=scorer.model_id, model_job=scorer.job, consent=consent,
            purpose=purpose, request_no=number, ids=len(ids), model_request_bytes=0,
            consent_record=record, consent_signature=signature,
            sealed_ids_bytes=sealed_ids_bytes(len(ids)), pseudonym_key=key_id)
        sealed = scorer._seal_ids(pseudonyms, salt, number)

        def messages() -> Iterator[coordinator_pb2.ScoreRequest]:
            yield coordinator_pb2.ScoreRequest(header=header)
            for node, blob in sealed.items():
                for start in range(0, len(blob), CHUNK_BYTES):
                    yield coordinator_pb2.ScoreRequest(sealed_ids=coordinator_pb2.SealedIds(
                        node=node, sealed=blob[start:start + CHUNK_BYTES]))

        replies = scorer.stub.DataAlerts(messages(), timeout=SCORE_DEADLINE_S)
        return read_chunks(replies, {"level_sums": MAX_PART_BYTES,
                                     "refused_budget": (len(ids) + 7) // 8},
                           exact=False, items={"snapshot": MAX_NODES,
                                               "stability": MAX_STABILITY})

    mended: set[str] = set()  # each cause mended once (as BankScorer.score does)
    while True:
        try:
            fields, items = ask()
            break
        except grpc.RpcError as err:
            details = err.details() or ""
            if STALE_KEY in details and STALE_KEY not in mended:
                mended.add(STALE_KEY)
                scorer.source.forget()
            elif "is not set up" in details and "setup" not in mended:
                mended.add("setup")
                scorer.setup()
            else:
                raise
    with scorer._he_lock:
        sums, _ = score_he.decrypt_sums(scorer.context, unpack_frames(fields["level_sums"]),
                                        len(ids))
    refused = refused_bits(fields["refused_budget"], len(ids))
    level_sum = np.where(refused, -1, np.maximum(np.rint(sums), 0)).astype(np.int64)
    stability: dict[str, dict[str, Any]] = {}
    for item in items["stability"]:
        node = stability.setdefault(item.party, {"reference": item.reference,
                                                 "current": item.current, "features": {}})
        value = item.stability.psi
        node["features"][item.stability.feature] = {
            "psi": None if np.isnan(value) else round(float(value), 4),
            "band": item.stability.band}
    scorer.audit.append("data_alerts", job=scorer.job, consent=consent, purpose=purpose,
                        rows=len(ids), details={"model": scorer.model_id,
                                                "ids_digest": ids_digest(pseudonyms)})
    return DataAlertLevels(ids=ids, level_sum=level_sum, refused=refused,
                           snapshots=tuple((v.party, v.version) for v in items["snapshot"]),
                           stability=stability)

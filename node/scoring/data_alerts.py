"""The bank's side of data alerts: one aggregate early-warning level per enterprise it asks about.

Uses the bank's scoring set-up of a model (`BankScorer`: its CKKS key, its pseudonyms, its
signed consent records, the sealed lists): the request is a scoring request without a model
request, sent to the coordinator's `DataAlerts` by scoring's own request path
(`node.scoring.request`: the same caps, refusals and mending). The answer is the sum over the
model's feature nodes of their levels (each node's own limits on its own data,
`node.monitoring.alerts`), decrypted here: the bank learns that sum per enterprise (shown as
one level, capped at red) and no node's share of it, and for each feature node the PSI of each
of its features over its own rows. A refused id (daily budget spent) gets no level.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.limits import MAX_PART_BYTES
from crypto.he import scoring as score_he
from crypto.he import unpack_frames
from crypto.score_wire import ids_digest
from node.monitoring.limits import level_name
from node.scoring.bank import DEFAULT_CONSENT_SECONDS, MAX_NODES, BankScorer
from node.scoring.outcome import refused_bits
from node.scoring.request import Request, in_batches, send

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
    asked as `BankScorer.score` asks (`node.scoring.request`: requests within the feature
    nodes' smallest `max_ids_per_request`, a stale pseudonym key or a lost set-up mended, a
    node's cap refusal raised as `CapExceeded`); each node's per-feature PSI is the same in
    every answer (it is over the node's own rows), so the first answer's is kept."""
    ids = list(ids)
    scorer._distinct(ids)
    expires = time.time() + DEFAULT_CONSENT_SECONDS
    parts = in_batches(scorer, len(ids), lambda start, end: _request(
        scorer, ids[start:end], consent, purpose, expires))
    if len(parts) <= 1:
        return parts[0] if parts else DataAlertLevels(
            ids=[], level_sum=np.zeros(0, dtype=np.int64), refused=np.zeros(0, dtype=bool))
    return DataAlertLevels(ids=ids, level_sum=np.concatenate([p.level_sum for p in parts]),
                           refused=np.concatenate([p.refused for p in parts]),
                           snapshots=parts[-1].snapshots, stability=parts[0].stability)


def _request(scorer: BankScorer, ids: list[str], consent: str, purpose: str, expires: float,
             ) -> DataAlertLevels:
    """One data-alert request, within the nodes' caps."""
    pseudonyms, key_id = scorer._pseudonyms_under_key(ids)
    request = Request(ids, pseudonyms, key_id, next(scorer._requests) % 2**32, consent,
                      purpose, expires)
    fields, items = send(scorer, scorer.stub.DataAlerts, request, {
        "level_sums": MAX_PART_BYTES, "refused_budget": (len(ids) + 7) // 8},
        {"snapshot": MAX_NODES, "stability": MAX_STABILITY}, "data_alerts")
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
                                                "ids_digest": ids_digest(request.pseudonyms)})
    return DataAlertLevels(ids=ids, level_sum=level_sum, refused=refused,
                           snapshots=tuple((v.party, v.version) for v in items["snapshot"]),
                           stability=stability)

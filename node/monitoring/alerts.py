"""Early warning from a feature node's own data: levels computed here, shared only encrypted.

A bank asks, through the coordinator, about the pseudonyms of its portfolio under its scoring
set-up of a model: the request is read, checked and charged exactly like a scoring request
(`FeatureScoring.admit`: sealed pseudonyms, signed consent, per-request and daily caps, daily
budget per enterprise; a refused id gets level 0 and a bit in `refused_budget`). For each id
this node computes its level from its own `[monitoring]` limits (`node.monitoring.limits`): the
enterprise's values in the current snapshot against its values in the reference snapshot of the
model (`node.monitoring.reference`). An id this node does not hold gets level 0, exactly like
one it holds whose data did not move. The levels go back as CKKS ciphertexts under the bank's
key, the same shape for every request of a size; the coordinator adds every feature node's
ciphertexts and forwards only the sum, and only when every feature node of the model answered
(`coordinator.data_alerts`).

What the bank learns per enterprise: the sum of the feature nodes' levels (it reports
min(sum, 3) as one level: none, yellow, orange, red). It does not learn which node raised a
level, nor whether a node holds the enterprise: a node without it and a node with it at level 0
send encryptions of the same zero. Leakage: the aggregate itself; where the bank knows from its
scoring coverage count that one feature node alone holds an enterprise, the aggregate is that
(unnamed) node's level, and a positive aggregate tells it some node holds the enterprise, which
the coverage count already told it. The coordinator sees ciphertexts and sizes only.

With the levels each node sends the PSI of each of its features (`node.stability`), computed
over all its own rows, reference snapshot against current: one number per feature, named by the
node, independent of which pseudonyms were asked (a PSI over the asked ids it holds would tell
the bank how many it holds). Levels and PSIs are computed once per (reference, snapshot) pair
and reused by every request until either changes. No gRPC here: node.server calls `partial`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from common.chunks import chunked
from crypto.he import pack_frames
from crypto.he import scoring as score_he
from crypto.score_wire import ids_digest
from node.monitoring.limits import levels
from node.monitoring.reference import aligned
from node.scoring.feature import FeatureScoring
from node.snapshot import Snapshot
from node.stability import band, psi
from proto.fedcredit.v1 import node_pb2

WHAT = "data-alert request"


@dataclass(frozen=True)
class Assessment:
    """Levels for every row of one snapshot, and its features' PSI, against one reference."""

    reference: str
    snapshot: str
    levels: np.ndarray  # per row of the snapshot's table, 0 to 3
    stability: tuple[tuple[str, float, str], ...]  # (feature, PSI, band)


class DataAlerts:
    """A feature node's data-alert handler, beside its scoring handlers."""

    def __init__(self, scoring: FeatureScoring) -> None:
        self.scoring = scoring
        self.state = scoring.state
        self._lock = threading.Lock()
        self._cache: dict[str, Assessment] = {}

    def assess(self, job: str, snapshot: Snapshot) -> Assessment:
        """Every row's level and every feature's PSI of `snapshot` against the reference of
        `job` (kept now from `snapshot` when none is kept: nothing has moved yet)."""
        references = self.state.references
        reference = references.load(job)
        if reference is None:
            references.keep(job, snapshot, "first data-alert request")
            reference = references.load(job)
            assert reference is not None
        with self._lock:
            found = self._cache.get(job)
            if found is not None and (found.reference, found.snapshot) == (reference.version,
                                                                            snapshot.version):
                return found
        table = snapshot.table
        config = self.state.config.monitoring
        then = aligned(reference, table.ids, table.features)
        found = Assessment(reference=reference.version, snapshot=snapshot.version,
                           levels=levels(config, table.features, then, table.X),
                           stability=self._stability(reference.features, reference.X,
                                                     table.features, table.X, config.psi_bins))
        with self._lock:
            self._cache[job] = found
        return found

    @staticmethod
    def _stability(ref_features: tuple[str, ...], ref_X: np.ndarray, features: list[str],
                   X: np.ndarray, bins: int) -> tuple[tuple[str, float, str], ...]:
        out = []
        for k, name in enumerate(features):
            value = (psi(ref_X[:, ref_features.index(name)], X[:, k], bins)
                     if name in ref_features else float("nan"))
            out.append((name, round(value, 6), band(value)))
        return tuple(out)

    def partial(self, messages: Iterable[node_pb2.ScorePartialRequest],
                ) -> Iterator[node_pb2.DataAlertPartialReply]:
        """Our encrypted level for each requested pseudonym, and our features' PSI."""
        asked = self.scoring.admit(messages, WHAT, model_request=False)
        header = asked.header
        found = self.assess(asked.job, asked.snapshot)
        held = asked.rows >= 0
        level = np.where(held, found.levels[np.where(held, asked.rows, 0)], 0).astype(float)
        ciphertexts = pack_frames(score_he.encrypt_partials(asked.setup.context, level,
                                                            np.zeros(level.size)))
        self.state.audit.append(
            "data_alerts", job=asked.job, peer=header.bank, consent=header.consent.strip(),
            purpose=header.purpose, rows=len(asked.rows),
            details={"ids_digest": ids_digest(asked.pseudonyms), "covered": int(held.sum()),
                     "raised": int((level > 0).sum()), "reference": found.reference,
                     "snapshot": found.snapshot})
        yield node_pb2.DataAlertPartialReply(snapshot=found.snapshot.encode())
        yield node_pb2.DataAlertPartialReply(reference=found.reference.encode())
        yield from chunked(ciphertexts, lambda c: node_pb2.DataAlertPartialReply(levels=c))
        if asked.refused.any():
            yield from chunked(np.packbits(asked.refused).tobytes(),
                               lambda c: node_pb2.DataAlertPartialReply(refused_budget=c))
        for name, value, named in found.stability:
            yield node_pb2.DataAlertPartialReply(stability=node_pb2.FeatureStability(
                feature=name, psi=value, band=named))

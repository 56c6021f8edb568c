"""Joint scoring of a scorecard, through the same path as vertical LR: each feature node's partial
is its points sum as a logit (−Σ points / factor) for the rows it is asked about, summed under
the bank's CKKS key by the relay; the bank adds its own part (intercept included). Reason codes:
the bank's own characteristics and "joint business data" (the package docstring says why)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import ProtocolError
from models.scorecard.points import PartyCard, reason_names, reason_shortfalls
from models.vlr.scoring import SumsOnlyRelay


@dataclass(frozen=True)
class _BankCard:
    """The bank's part: own points and intercept, the nodes' maximum points (metadata)."""

    card: PartyCard
    feature_max: float
    public_context: bytes = b""
    private_key: bytes = b""

    @property
    def features(self) -> tuple[str, ...]:
        return self.card.names

    @property
    def reason_names(self) -> tuple[str, ...]:
        return reason_names(self.card.names)

    def request(self, number: int, own_rows: np.ndarray, present: np.ndarray) -> bytes:
        return b""

    def discard(self, number: int) -> None:
        return None

    def finish(self, number: int, own_rows: np.ndarray, present: np.ndarray,
               others: np.ndarray, combined: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Joint logits and, per row, the points lost by each own characteristic and by the
        feature nodes' data together (Σ_F points = −factor · the decrypted sum)."""
        rows = np.asarray(own_rows, np.float64).reshape(len(present), len(self.card.columns))
        rows = np.where(np.asarray(present, bool)[:, None], rows, np.nan)
        own = self.card.points(rows)  # an enterprise we know nothing of: missing slots
        logits = self.card.intercept - own.sum(axis=1) / self.card.factor + others
        lost = reason_shortfalls(own, self.card.max_points(), -self.card.factor * others,
                                 self.feature_max)
        return logits, lost


@dataclass(frozen=True)
class _FeatureCard:
    """A feature node's part: its points as a logit for every row asked (rows it does not hold
    in its missing slots, as in training)."""

    card: PartyCard

    @property
    def features(self) -> tuple[str, ...]:
        return self.card.names

    def partial(self, number: int, values: np.ndarray, present: np.ndarray,
                request: bytes) -> tuple[np.ndarray, bytes]:
        return self.card.partial_logits(values, np.asarray(present, bool)), b""


@dataclass(frozen=True)
class ScorecardScoring:
    """Joint scoring of a scorecard (`models.scoring.ScoringKind`)."""

    model_file: str = "scorecard.json"
    key_file: str = ""

    def load(self, folder: Path, job: str) -> tuple[PartyCard, dict[str, Any]]:
        path = folder / self.model_file
        if not path.is_file():
            raise ProtocolError(f"no scorecard of job {job} here ({path})")
        return PartyCard.from_json(path.read_text(), str(path))

    def load_bank(self, folder: Path, job: str, private_key: bytes) -> _BankCard:
        card, raw = self.load(folder, job)
        ranges = raw.get("feature_points")
        if ranges is None:
            raise ProtocolError(f"scorecard of job {job} has no feature nodes' point ranges: "
                                "its training did not finish")
        return _BankCard(card, float(sum(r["max"] for r in ranges.values())))

    def load_feature(self, folder: Path, job: str, public_context: bytes) -> _FeatureCard:
        return _FeatureCard(self.load(folder, job)[0])

    def relay(self, job: str, public_context: bytes) -> SumsOnlyRelay:
        return SumsOnlyRelay()


SCORECARD_SCORING = ScorecardScoring()

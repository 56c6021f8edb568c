"""A party's part of a trained vertical LR model, its partial logits, and LR joint scoring."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import ModelFormatError, ProtocolError
from models.vlr.preprocess import Standardizer

MODEL_SCHEMA = 1
DTYPE = "float64"  # every column of a node's table


@dataclass(frozen=True)
class PartyModel:
    """Weights and own preprocessing of one party; no one else ever holds them.

    The label party's last weight is the intercept; a feature party that did not hold every
    training row has a last weight for its presence flag (rows it lacks contribute 0, the
    same neutral value as in training).
    """

    party: str
    role: str
    job: str
    features: tuple[str, ...]
    weights: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    @property
    def has_intercept(self) -> bool:
        return self.role == "label"

    @property
    def has_indicator(self) -> bool:
        return self.role == "feature" and self.weights.size == len(self.features) + 1

    def standardized(self, rows: np.ndarray) -> np.ndarray:
        return Standardizer(self.mean, self.scale).transform(rows)

    def partial_logits(self, rows: np.ndarray, present: np.ndarray) -> np.ndarray:
        """Logit part for each requested row; rows with `present` False contribute nothing."""
        z = self.standardized(rows)
        z[~present] = 0.0
        n = len(self.features)
        out: np.ndarray = z @ self.weights[:n]
        if self.has_indicator:
            out = out + present.astype(np.float64) * self.weights[n]
        if self.has_intercept:
            out = out + self.weights[n]
        return out

    def contributions(self, rows: np.ndarray) -> np.ndarray:
        """Per-feature logit contributions (for reason codes), rows × features."""
        out: np.ndarray = self.standardized(rows) * self.weights[: len(self.features)]
        return out

    def to_json(self) -> str:
        return json.dumps({"schema": MODEL_SCHEMA, "kind": "vlr-party",
                           "party": self.party, "role": self.role, "job": self.job,
                           "features": list(self.features),
                           "dtypes": [DTYPE] * len(self.features),
                           "weights": self.weights.tolist(),
                           "mean": self.mean.tolist(), "scale": self.scale.tolist()})

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> PartyModel:
        """A saved part; an unversioned file (the format before schema 1, the same fields) is
        read as it is, anything else is refused with what to do."""
        try:
            raw: dict[str, Any] = json.loads(text)
        except ValueError as err:
            raise ModelFormatError(f"{source}: not a fedcredit model file ({err})") from err
        schema = raw.get("schema", MODEL_SCHEMA)
        if schema != MODEL_SCHEMA or raw.get("kind", "vlr-party") != "vlr-party":
            raise ModelFormatError(
                f"{source}: a {raw.get('kind')!r} model of schema {schema!r}; this version "
                f"reads vlr-party schema {MODEL_SCHEMA}: retrain it")
        dtypes = raw.get("dtypes", [DTYPE] * len(raw.get("features", [])))
        if list(dtypes) != [DTYPE] * len(raw.get("features", [])):
            raise ModelFormatError(f"{source}: columns of types {dtypes}; this version reads "
                                   f"one {DTYPE} per feature")
        return cls(party=raw["party"], role=raw["role"], job=raw["job"],
                   features=tuple(raw["features"]),
                   weights=np.asarray(raw["weights"], dtype=np.float64),
                   mean=np.asarray(raw["mean"], dtype=np.float64),
                   scale=np.asarray(raw["scale"], dtype=np.float64))

    @classmethod
    def load(cls, path: Path) -> PartyModel:
        return cls.from_json(path.read_text(), str(path))


@dataclass(frozen=True)
class _BankLr:
    """The bank's LR part: own logits (with the intercept) plus the Fs' sum; no extra keys."""

    model: PartyModel
    public_context: bytes = b""
    private_key: bytes = b""

    @property
    def features(self) -> tuple[str, ...]:
        return self.model.features

    @property
    def reason_names(self) -> tuple[str, ...]:
        return self.model.features

    def request(self, number: int, own_rows: np.ndarray, present: np.ndarray) -> bytes:
        return b""

    def discard(self, number: int) -> None:
        return None

    def finish(self, number: int, own_rows: np.ndarray, present: np.ndarray,
               others: np.ndarray, combined: bytes) -> tuple[np.ndarray, np.ndarray]:
        logits = self.model.partial_logits(own_rows, present) + others
        return logits, self.model.contributions(own_rows)


@dataclass(frozen=True)
class _FeatureLr:
    """A feature node's LR part: its partial logits; no model part beside them."""

    model: PartyModel

    @property
    def features(self) -> tuple[str, ...]:
        return self.model.features

    def partial(self, number: int, values: np.ndarray, present: np.ndarray,
                request: bytes) -> tuple[np.ndarray, bytes]:
        return self.model.partial_logits(values, present), b""


class SumsOnlyRelay:
    """The relay's part of a model scored by CKKS sums alone (LR, scorecards): nothing to add."""

    def combine(self, number: int, parts: Mapping[str, bytes]) -> bytes:
        return b""


@dataclass(frozen=True)
class VlrScoring:
    """Joint scoring of a vertical LR model (`models.scoring.ScoringKind`)."""

    model_file: str = "model.json"
    key_file: str = ""

    def _load(self, folder: Path, job: str) -> PartyModel:
        path = folder / self.model_file
        if not path.is_file():
            raise ProtocolError(f"no logistic regression model of job {job} here ({path})")
        return PartyModel.load(path)

    def load_bank(self, folder: Path, job: str, private_key: bytes) -> _BankLr:
        return _BankLr(self._load(folder, job))

    def load_feature(self, folder: Path, job: str, public_context: bytes) -> _FeatureLr:
        return _FeatureLr(self._load(folder, job))

    def relay(self, job: str, public_context: bytes) -> SumsOnlyRelay:
        return SumsOnlyRelay()


VLR_SCORING = VlrScoring()

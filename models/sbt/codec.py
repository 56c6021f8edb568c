"""SecureBoost model files, format v2: JSON with a schema version; never pickle.

L's file holds its trees (heap-ordered arrays; NaN thresholds as null), base margin, the feature
parties' names and the training reports; F's file holds its private lookup table and the tree
topologies that point into it. Both name the party's own columns in training order (v2): split
feature numbers index that list, and scoring takes the columns from the table by those names.
Files saved before format v2 (v1 named no columns; pickle, b"\\x80...") and files of another
version are refused with a message: such a model must be retrained.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from common.errors import ModelFormatError
from models.sbt.feature import FeatureParty, SplitRecord
from models.sbt.label import LabelParty
from models.sbt.tree import Tree

FORMAT_VERSION = 2
DTYPE = "float64"  # every column of a node's table
LABEL_FORMAT = "fedcredit.sbt.label"
FEATURE_FORMAT = "fedcredit.sbt.feature"
PICKLE_MAGIC = b"\x80"


@dataclass(frozen=True)
class LabelModel:
    """What L saved: its trees, base margin, the Fs' names (sorted) and the training reports."""

    trees: list[Tree]
    base_margin: float
    feature_parties: tuple[str, ...]
    reports: tuple[dict[str, Any], ...] = ()
    columns: tuple[str, ...] = ()  # L's own columns, in training order (saved models)

    @classmethod
    def from_party(cls, label: LabelParty) -> LabelModel:
        return cls(list(label.trees), float(label.base_margin), tuple(label.feature_parties))


@dataclass(frozen=True)
class FeatureModel:
    """What F saved: its private lookup table and its tree shapes (codes into the table)."""

    party: str
    records: Sequence[SplitRecord]
    topologies: Sequence[np.ndarray] = field(default_factory=list)
    columns: tuple[str, ...] = ()  # F's own columns, in training order (saved models)

    @classmethod
    def from_party(cls, party: FeatureParty) -> FeatureModel:
        return cls(party.name, party.records(),
                   [party.topology(t) for t in range(party.trees_done)])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ColumnV2(_Strict):
    name: str
    dtype: Literal["float64"]


class _TreeV1(_Strict):
    owner: list[int]
    feature: list[int]
    bin: list[int]
    threshold: list[float | None]
    missing_left: list[bool]
    record: list[int]
    value: list[float]


class _LabelV2(_Strict):
    format: Literal["fedcredit.sbt.label"]
    version: Literal[2]
    columns: list[_ColumnV2]
    base_margin: float
    feature_parties: list[str]
    trees: list[_TreeV1]
    reports: list[dict[str, Any]]


class _RecordV1(_Strict):
    feature: int
    threshold: float | None
    missing_left: bool


class _FeatureV2(_Strict):
    format: Literal["fedcredit.sbt.feature"]
    version: Literal[2]
    party: str
    columns: list[_ColumnV2]
    records: list[_RecordV1]
    topologies: list[list[int]]


def _finite_or_none(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, np.float64)]


def _plain(value: Any) -> Any:
    """Report values as JSON: numpy scalars to Python, non-finite floats to null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _columns(names: Sequence[str]) -> list[dict[str, str]]:
    return [{"name": str(name), "dtype": DTYPE} for name in names]


def label_model_bytes(base_margin: float, trees: list[Tree], feature_parties: tuple[str, ...],
                      reports: list[dict[str, Any]], *, columns: Sequence[str]) -> bytes:
    """L's model file: its columns, trees, base margin, feature parties, reports."""
    doc = {"format": LABEL_FORMAT, "version": FORMAT_VERSION, "columns": _columns(columns),
           "base_margin": float(base_margin),
           "feature_parties": list(feature_parties),
           "trees": [{"owner": t.owner.tolist(), "feature": t.feature.tolist(),
                      "bin": t.bin.tolist(), "threshold": _finite_or_none(t.threshold),
                      "missing_left": np.asarray(t.missing_left, bool).tolist(),
                      "record": t.record.tolist(), "value": t.value.tolist()} for t in trees],
           "reports": _plain(list(reports))}
    return json.dumps(doc, allow_nan=False).encode()


def feature_model_bytes(party: str, records: Sequence[SplitRecord],
                        topologies: Sequence[np.ndarray], *, columns: Sequence[str]) -> bytes:
    """F's model file: its columns, private lookup table and the topologies pointing into it."""
    doc = {"format": FEATURE_FORMAT, "version": FORMAT_VERSION, "party": party,
           "columns": _columns(columns),
           "records": [{"feature": int(r.feature),
                        "threshold": float(r.threshold) if math.isfinite(r.threshold) else None,
                        "missing_left": bool(r.missing_left)} for r in records],
           "topologies": [np.asarray(t, np.int64).tolist() for t in topologies]}
    return json.dumps(doc, allow_nan=False).encode()


def _parse(data: bytes, kind: str, schema: type[_Strict]) -> Any:
    if data[:1] == PICKLE_MAGIC:
        raise ModelFormatError(f"this SecureBoost {kind} model was saved before format "
                               "v1 (pickle); it cannot be loaded: retrain it")
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFormatError(f"SecureBoost {kind} model file is not JSON: {err}") from err
    version = raw.get("version") if isinstance(raw, dict) else None
    if version == 1:
        raise ModelFormatError(f"this SecureBoost {kind} model was saved in format v1, which "
                               "does not name its feature columns, so it cannot be matched to "
                               f"the table: retrain it (format v{FORMAT_VERSION})")
    if version != FORMAT_VERSION:
        raise ModelFormatError(f"SecureBoost {kind} model file has format version {version!r}, "
                               f"this version reads v{FORMAT_VERSION} only (a model saved "
                               f"before format v{FORMAT_VERSION} must be retrained)")
    try:
        return schema.model_validate(raw)
    except ValidationError as err:
        raise ModelFormatError(f"SecureBoost {kind} model file is malformed: {err}") from err


def _nan(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def load_label_model(data: bytes) -> LabelModel:
    """L's model from its file; an old pickle file or another version is refused."""
    doc: _LabelV2 = _parse(data, "label", _LabelV2)
    columns = _names(doc.columns, "label")
    trees = []
    for t in doc.trees:
        sizes = {len(t.owner), len(t.feature), len(t.bin), len(t.threshold),
                 len(t.missing_left), len(t.record), len(t.value)}
        if len(sizes) != 1:
            raise ModelFormatError("SecureBoost label model file: a tree's arrays differ in size")
        trees.append(Tree(owner=np.asarray(t.owner, np.int64),
                          feature=np.asarray(t.feature, np.int64),
                          bin=np.asarray(t.bin, np.int64), threshold=_nan(t.threshold),
                          missing_left=np.asarray(t.missing_left, bool),
                          record=np.asarray(t.record, np.int64),
                          value=np.asarray(t.value, np.float64)))
        own = trees[-1].feature[trees[-1].owner == 0]
        if own.size and (own.min() < 0 or own.max() >= len(columns)):
            raise ModelFormatError("SecureBoost label model file: a split names a column the "
                                   "model does not list")
    if not trees:
        raise ModelFormatError("SecureBoost label model file holds no trees")
    return LabelModel(trees=trees, base_margin=doc.base_margin,
                      feature_parties=tuple(doc.feature_parties), reports=tuple(doc.reports),
                      columns=columns)


def load_feature_model(data: bytes) -> FeatureModel:
    """F's model from its file; an old pickle file or another version is refused."""
    doc: _FeatureV2 = _parse(data, "feature", _FeatureV2)
    columns = _names(doc.columns, "feature")
    if any(not 0 <= r.feature < len(columns) for r in doc.records):
        raise ModelFormatError("SecureBoost feature model file: a split names a column the "
                               "model does not list")
    records = [SplitRecord(feature=r.feature,
                           threshold=float("nan") if r.threshold is None else r.threshold,
                           missing_left=r.missing_left) for r in doc.records]
    topologies = [np.asarray(t, np.int64) for t in doc.topologies]
    for codes in topologies:
        mine = codes[codes >= 0]
        if mine.size and mine.max() >= len(records):
            raise ModelFormatError("SecureBoost feature model file: a topology names records "
                                   "this party does not hold")
    return FeatureModel(party=doc.party, records=records, topologies=topologies,
                        columns=columns)


def _names(columns: Sequence[_ColumnV2], kind: str) -> tuple[str, ...]:
    names = tuple(c.name for c in columns)
    if len(set(names)) != len(names):
        raise ModelFormatError(f"SecureBoost {kind} model file names a column twice")
    return names

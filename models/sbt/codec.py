"""Saved SecureBoost models as JSON with a schema version (placeholder until the scoring merge)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, fields
from typing import Any

import numpy as np

from models.sbt.feature import SplitRecord
from models.sbt.label import Tree

SCHEMA = 1


def _tree(tree: Tree) -> dict[str, Any]:
    return {f.name: np.asarray(getattr(tree, f.name)).tolist() for f in fields(tree)}


def label_model_bytes(base_margin: float, trees: Sequence[Tree], feature_parties: Sequence[str],
                      reports: list[dict[str, Any]]) -> bytes:
    return json.dumps({"schema": SCHEMA, "kind": "sbt-label", "base_margin": base_margin,
                       "trees": [_tree(t) for t in trees],
                       "feature_parties": list(feature_parties), "reports": reports}).encode()


def feature_model_bytes(party: str, records: Sequence[SplitRecord],
                        topologies: Sequence[np.ndarray]) -> bytes:
    return json.dumps({"schema": SCHEMA, "kind": "sbt-feature", "party": party,
                       "records": [asdict(r) for r in records],
                       "topologies": [np.asarray(t).tolist() for t in topologies]}).encode()

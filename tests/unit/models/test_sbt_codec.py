"""SecureBoost model files v2: exact round trips; old or foreign files refused with a message."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from common.errors import ModelFormatError
from models.sbt.codec import (
    FORMAT_VERSION,
    feature_model_bytes,
    label_model_bytes,
    load_feature_model,
    load_label_model,
)
from models.sbt.feature import ABSENT, LEAF, SplitRecord
from models.sbt.tree import Tree


def _tree(seed: int) -> Tree:
    rng = np.random.default_rng(seed)
    tree = Tree.empty(2)
    tree.owner[:] = [0, 1, LEAF, LEAF, LEAF, ABSENT, ABSENT]
    tree.feature[0], tree.bin[0], tree.threshold[0] = 2, 5, rng.normal()
    tree.record[1] = 0
    tree.missing_left[[0, 1]] = [True, False]
    tree.value[[2, 3, 4]] = rng.normal(size=3) / 3.0
    return tree


def _label_bytes() -> bytes:
    return label_model_bytes(-0.4054651081081644, [_tree(1), _tree(2)], ("core", "tax"),
                             [{"tree": 0, "loss": 0.61, "auc": float("nan"), "splits": 2}],
                             columns=("b0", "b1", "b2"))


def test_label_model_round_trips_exactly() -> None:
    trees = [_tree(1), _tree(2)]
    model = load_label_model(_label_bytes())

    assert model.base_margin == -0.4054651081081644
    assert model.feature_parties == ("core", "tax")
    assert model.columns == ("b0", "b1", "b2")
    assert all(a.equal(b) for a, b in zip(model.trees, trees, strict=True))
    assert model.reports[0]["loss"] == 0.61 and model.reports[0]["auc"] is None


def test_feature_model_round_trips_exactly() -> None:
    records = [SplitRecord(1, 0.1 + 0.2, True), SplitRecord(0, -3.25, False)]
    topologies = [np.array([-1, 0, -2, -2, -2, -3, -3]), np.array([1, -2, -2])]
    model = load_feature_model(feature_model_bytes("core", records, topologies,
                                                   columns=("c0", "c1")))

    assert model.party == "core" and model.columns == ("c0", "c1")
    assert list(model.records) == records
    assert all(np.array_equal(a, b) for a, b in zip(model.topologies, topologies, strict=True))


def test_a_pickled_model_from_before_v1_is_refused_with_a_message() -> None:
    old = pickle.dumps({"base_margin": 0.0, "trees": [], "feature_parties": ()})
    assert old[:1] == b"\x80"
    for load in (load_label_model, load_feature_model):
        with pytest.raises(ModelFormatError, match="before format v1.*retrain"):
            load(old)


def test_another_format_version_is_refused() -> None:
    doc = json.loads(_label_bytes())
    doc["version"] = FORMAT_VERSION + 1
    with pytest.raises(ModelFormatError, match="version 3.*retrained"):
        load_label_model(json.dumps(doc).encode())
    del doc["version"]
    with pytest.raises(ModelFormatError, match="version None"):
        load_label_model(json.dumps(doc).encode())


def test_malformed_files_are_refused_naming_the_problem() -> None:
    doc = json.loads(_label_bytes())
    doc["trees"][0]["value"] = doc["trees"][0]["value"][:-1]
    with pytest.raises(ModelFormatError, match="differ in size"):
        load_label_model(json.dumps(doc).encode())
    with pytest.raises(ModelFormatError, match="not JSON"):
        load_label_model(b"{not json")
    with pytest.raises(ModelFormatError, match="records"):
        load_feature_model(feature_model_bytes("core", [], [np.array([0, -2, -2])],
                                               columns=("c0",)))
    with pytest.raises(ModelFormatError, match="malformed"):
        load_label_model(json.dumps({**json.loads(_label_bytes()), "extra": 1}).encode())


def test_a_v1_file_naming_no_columns_is_refused_with_what_to_do() -> None:
    doc = json.loads(_label_bytes())
    doc["version"] = 1
    del doc["columns"]
    with pytest.raises(ModelFormatError, match="v1.*does not name its feature columns.*retrain"):
        load_label_model(json.dumps(doc).encode())


def test_columns_must_cover_every_split_and_be_distinct() -> None:
    with pytest.raises(ModelFormatError, match="names a column the model does not list"):
        load_label_model(label_model_bytes(0.0, [_tree(1)], (), [], columns=("b0", "b1")))
    with pytest.raises(ModelFormatError, match="names a column the model does not list"):
        load_feature_model(feature_model_bytes("core", [SplitRecord(1, 0.0, True)],
                                               [np.array([0, -2, -2])], columns=("c0",)))
    with pytest.raises(ModelFormatError, match="twice"):
        load_feature_model(feature_model_bytes("core", [SplitRecord(0, 0.0, True)],
                                               [np.array([0, -2, -2])], columns=("c0", "c0")))
    doc = json.loads(_label_bytes())
    doc["columns"][0]["dtype"] = "int64"
    with pytest.raises(ModelFormatError, match="malformed"):
        load_label_model(json.dumps(doc).encode())

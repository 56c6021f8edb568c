"""A model's columns taken from the node's table by name: order-free, extra-tolerant, strict."""

from __future__ import annotations

import numpy as np
import pytest

from node.columns import MissingFeature, model_columns
from node.datasource import NodeTable


def _table(features: list[str]) -> NodeTable:
    base = {"revenue": 1.0, "utilisation": 2.0, "age": 3.0, "extra": 4.0}
    X = np.asarray([[base[f] * (row + 1) for f in features] for row in range(4)])
    return NodeTable(ids=[f"id-{k}" for k in range(4)], features=features, X=X, y=None,
                     source="bank.csv")


def test_columns_come_in_the_model_order_whatever_the_table_order() -> None:
    model = ("revenue", "utilisation", "age")
    trained = model_columns(_table(list(model)), model, party="bank", model="m")
    reordered = model_columns(_table(["age", "extra", "revenue", "utilisation"]), model,
                              party="bank", model="m")
    assert reordered.dtype == np.float64 and reordered.shape == (4, 3)
    assert np.array_equal(trained, reordered)


def test_a_missing_feature_is_refused_naming_it_the_model_and_the_table() -> None:
    with pytest.raises(MissingFeature) as err:
        model_columns(_table(["revenue", "age"]), ("revenue", "utilisation", "age"),
                      party="bank", model="model sme-default (job tr)")
    message = str(err.value)
    assert message.startswith("model sme-default (job tr) needs feature 'utilisation', "
                              "which bank's table bank.csv no longer has")
    assert "data.features" in message

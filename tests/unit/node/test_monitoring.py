"""A feature node's own early-warning limits, their levels, and its reference snapshots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from common.errors import DataValidationError
from node.datasource import NodeTable
from node.monitoring.limits import Limit, MonitoringConfig, column_levels, level_name, levels
from node.monitoring.reference import ReferenceStore, aligned
from node.snapshot import Snapshot


def _limit(**kw: object) -> Limit:
    return Limit.model_validate({"column": "orders", "yellow": 0.2, "orange": 0.4, "red": 0.6,
                                 **kw})


def test_a_relative_fall_reaches_each_level_in_turn() -> None:
    then = np.full(6, 100.0)
    now = np.asarray([100.0, 85.0, 79.0, 55.0, 30.0, 150.0])
    assert column_levels(_limit(), then, now).tolist() == [0, 0, 1, 2, 3, 0]


def test_absolute_up_and_both_directions() -> None:
    then, now = np.zeros(4), np.asarray([0.1, 0.25, -0.5, 0.7])
    up = _limit(change="absolute", direction="up")
    both = _limit(change="absolute", direction="both")
    assert column_levels(up, then, now).tolist() == [0, 1, 0, 3]
    assert column_levels(both, then, now).tolist() == [0, 1, 2, 3]


def test_missing_values_and_zero_to_zero_reach_no_level() -> None:
    then = np.asarray([np.nan, 5.0, 0.0, 0.0])
    now = np.asarray([1.0, np.nan, 0.0, -3.0])
    assert column_levels(_limit(), then, now).tolist() == [0, 0, 0, 3]  # 0 -> -3: a fall


def test_an_enterprise_gets_the_worst_level_of_its_limits() -> None:
    config = MonitoringConfig.model_validate({"limits": [
        {"column": "orders", "yellow": 0.2, "orange": 0.4, "red": 0.6},
        {"column": "late", "change": "absolute", "direction": "up", "yellow": 5, "orange": 10,
         "red": 20}]})
    then = np.asarray([[100.0, 0.0], [100.0, 0.0], [100.0, 0.0]])
    now = np.asarray([[75.0, 12.0], [100.0, 25.0], [100.0, 1.0]])
    assert levels(config, ["orders", "late"], then, now).tolist() == [2, 3, 0]


def test_limits_must_rise_and_name_columns_once() -> None:
    with pytest.raises(ValidationError, match="rise from yellow to red"):
        _limit(orange=0.1)
    with pytest.raises(ValidationError, match="greater than 0"):
        _limit(yellow=0)
    with pytest.raises(ValidationError, match="more than one limit"):
        MonitoringConfig.model_validate({"limits": [
            {"column": "a", "yellow": 1, "orange": 2, "red": 3},
            {"column": "a", "yellow": 1, "orange": 2, "red": 3}]})
    with pytest.raises(ValidationError):
        _limit(direction="sideways")


def test_unknown_columns_are_refused_naming_them() -> None:
    config = MonitoringConfig.model_validate({"limits": [
        {"column": "nope", "yellow": 1, "orange": 2, "red": 3}]})
    with pytest.raises(DataValidationError, match="nope"):
        config.check_columns(["orders"], "core")


def test_level_names_cap_at_red() -> None:
    assert [level_name(n) for n in (0, 1, 2, 3, 7)] == ["none", "yellow", "orange", "red",
                                                       "red"]


def _snapshot(ids: list[str], X: np.ndarray, version: str) -> Snapshot:
    table = NodeTable(ids=ids, features=["orders", "late"], X=X, y=None, source="t")
    return Snapshot(table=table, training=table, version=version, loaded_at=0.0, digest=version)


def test_references_are_kept_once_versioned_and_rebased(tmp_path: Path) -> None:
    store = ReferenceStore(tmp_path)
    first = _snapshot(["a", "b", "c"], np.asarray([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), "v1-x")
    second = _snapshot(["c", "d"], np.asarray([[7.0, 8.0], [9.0, 0.0]]), "v2-y")
    assert store.keep("job1", first, "training") == "v1-x"
    assert store.keep("job1", second, "scoring set-up") == "v1-x"  # one is kept already
    found = ReferenceStore(tmp_path).load("job1")  # read back from disk
    assert found is not None and found.version == "v1-x" and found.trigger == "training"
    assert store.rebase("job1", second, "operator") == "v2-y"
    assert sorted(p.name for p in (tmp_path / "monitoring" / "job1").glob("reference-*")) == [
        "reference-v1-x.npz", "reference-v2-y.npz"]
    assert store.load("job1").version == "v2-y"  # type: ignore[union-attr]
    assert store.load("job2") is None


def test_the_reference_is_aligned_to_the_current_rows_by_id(tmp_path: Path) -> None:
    store = ReferenceStore(tmp_path)
    store.keep("job1", _snapshot(["b", "a", "c"], np.asarray(
        [[2.0, 20.0], [1.0, 10.0], [3.0, 30.0]]), "v1-x"), "training")
    reference = store.load("job1")
    assert reference is not None
    then = aligned(reference, ["c", "z", "a"], ["late", "new", "orders"])
    assert np.array_equal(then, np.asarray([[30.0, np.nan, 3.0], [np.nan] * 3,
                                            [10.0, np.nan, 1.0]]), equal_nan=True)

"""The report's rows: named ids, the scoring population's files, segments from a CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.errors import DataValidationError
from fedcredit.report.rows import applicants, decided_probabilities, named_rows, read_segments
from node.datasource import NodeTable


def _table() -> NodeTable:
    return NodeTable(ids=["a", "b", "c", "d"], features=["x"], X=np.zeros((4, 1)),
                     y=np.array([1, 0, -1, 0], dtype=np.int8), source="bank.csv")


def test_named_rows_take_labels_from_the_table_and_refuse_unknown_or_unlabelled(
        tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("d\na\n")
    rows = named_rows(ids, _table())
    assert rows.ids == ["d", "a"] and rows.y.tolist() == [0, 1]
    ids.write_text("a\nz\n")
    with pytest.raises(DataValidationError, match="1 of 2 ids are not in the bank's table"):
        named_rows(ids, _table())
    ids.write_text("a\nc\n")
    with pytest.raises(DataValidationError, match="1 of 2 ids have no label"):
        named_rows(ids, _table())


def test_applicants_are_the_unlabelled_rows() -> None:
    assert applicants(_table()) == ["c"]


def test_decided_probabilities_read_a_decisions_file(tmp_path: Path) -> None:
    path = tmp_path / "decisions.csv"
    path.write_text("id,outcome,probability_of_default,score\n"
                    "a,decided,0.125,600\nb,refer,0.5,\nc,refused,,\nd,decided,0.25,580\n")
    assert decided_probabilities(path).tolist() == [0.125, 0.25]
    path.write_text("id,score\na,600\n")
    with pytest.raises(DataValidationError, match="probability_of_default"):
        decided_probabilities(path)
    path.write_text("id,outcome,probability_of_default\na,decided,1.5\n")
    with pytest.raises(DataValidationError, match="between 0 and 1"):
        decided_probabilities(path)


def test_segments_leave_unknown_values_out(tmp_path: Path) -> None:
    path = tmp_path / "segments.csv"
    path.write_text("id,core,tier,credit_white\na,1,1,0\nb,1,3,\nc,2,3,1\n")
    groups = read_segments(path, ["a", "b", "c", "z"])
    assert set(groups) == {"tier", "credit_white"}  # core is not a default breakdown
    assert {k: v.tolist() for k, v in groups["tier"].items()} == {
        "1": [True, False, False, False], "3": [False, True, True, False]}
    assert {k: v.tolist() for k, v in groups["credit_white"].items()} == {
        "0": [True, False, False, False], "1": [False, False, True, False]}
    path.write_text("enterprise,tier\na,1\n")
    with pytest.raises(DataValidationError, match="`id` column"):
        read_segments(path, ["a"])

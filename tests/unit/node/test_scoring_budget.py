"""The feature node's scoring counters: budgets, model versions over a period, requests a day."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from node.config import ScoringCaps
from node.scoring.budget import BudgetBook

A, B, C = b"a" * 16, b"b" * 16, b"c" * 16


class Clock:
    """A UTC day a test moves."""

    def __init__(self) -> None:
        self.day = dt.date(2026, 3, 1)

    def __call__(self) -> dt.date:
        return self.day


def _book(tmp_path: Path, clock: Clock, **caps: int) -> BudgetBook:
    return BudgetBook(tmp_path / "budget.sqlite", ScoringCaps(**caps), today=clock)


def test_the_daily_budget_resets_the_next_day_and_per_bank(tmp_path: Path) -> None:
    clock = Clock()
    book = _book(tmp_path, clock, daily_budget=2)
    for _ in range(2):
        assert not book.charge("bank", [A, B], "m1").refused
    assert book.charge("bank", [A, C], "m1").over_budget == {A}
    assert not book.charge("other-bank", [A], "m1").refused
    clock.day += dt.timedelta(days=1)
    assert not book.charge("bank", [A], "m1").refused


def test_model_versions_are_counted_over_the_period(tmp_path: Path) -> None:
    clock = Clock()
    book = _book(tmp_path, clock, max_model_versions=2, model_period_days=10)
    assert not book.charge("bank", [A], "m1").refused
    clock.day += dt.timedelta(days=3)
    assert not book.charge("bank", [A], "m2").refused
    assert not book.charge("bank", [A, B], "m1").refused  # a version already used: fine
    charge = book.charge("bank", [A, B], "m3")
    assert charge.over_versions == {A} and not charge.over_budget  # B has used only m1
    clock.day += dt.timedelta(days=7)  # m1 of day 0 left the period; m1 of day 3 did not
    assert book.charge("bank", [A], "m3").over_versions == {A}
    clock.day += dt.timedelta(days=3)
    assert not book.charge("bank", [A], "m3").refused


def test_counters_survive_a_restart_and_requests_reset_each_day(tmp_path: Path) -> None:
    clock = Clock()
    book = _book(tmp_path, clock, daily_budget=1, max_requests_per_day=2)
    assert book.count_request("bank") is None and book.count_request("bank") is None
    book.charge("bank", [A], "m1")
    again = _book(tmp_path, clock, daily_budget=1, max_requests_per_day=2)
    assert again.count_request("bank") == 2  # refused, not counted
    assert again.count_request("other-bank") is None
    assert again.charge("bank", [A], "m1").over_budget == {A}
    clock.day += dt.timedelta(days=1)
    assert again.count_request("bank") is None


def _old_store(folder: Path, create: str, insert: str) -> None:
    """A budget store as an older version left it: one table, holding one row for A."""
    db = sqlite3.connect(folder / "budget.sqlite")
    db.execute(create)
    db.execute(insert, (A,))
    db.commit()
    db.close()


def test_a_store_from_before_model_versions_is_upgraded(tmp_path: Path) -> None:
    _old_store(tmp_path, "CREATE TABLE queries (bank TEXT, hid BLOB, day TEXT, n INTEGER, "
                         "PRIMARY KEY (bank, hid, day))",
               "INSERT INTO queries VALUES ('bank', ?, '2026-03-01', 20)")
    book = _book(tmp_path, Clock())
    assert book.charge("bank", [A, B], "m1").over_budget == {A}


@pytest.mark.parametrize(("field", "value"), [("daily_budget", 0), ("max_ids_per_request", 0),
                                              ("max_ids_per_request", 10**8),
                                              ("max_requests_per_day", -1),
                                              ("max_model_versions", 0),
                                              ("model_period_days", 0)])
def test_a_cap_out_of_range_names_its_field(field: str, value: int) -> None:
    with pytest.raises(ValidationError, match=field):
        ScoringCaps(**{field: value})


def test_an_id_asked_twice_in_one_charge_counts_once(tmp_path: Path) -> None:
    clock = Clock()
    book = _book(tmp_path, clock, daily_budget=2)
    assert not book.charge("bank", [B, A, B], "m1").refused
    assert not book.charge("bank", [A], "m1").refused
    assert book.charge("bank", [A, B, C], "m1").over_budget == {A}  # B: once, then once more
    assert book.charge("bank", [], "m1").refused == frozenset()


def test_a_store_with_jobs_beside_its_answers_keeps_their_model_versions(tmp_path: Path) -> None:
    _old_store(tmp_path, "CREATE TABLE answers (bank TEXT, hid BLOB, day TEXT, n INTEGER, jobs "
                         "TEXT NOT NULL DEFAULT '', PRIMARY KEY (bank, hid, day)) WITHOUT ROWID",
               "INSERT INTO answers VALUES ('bank', ?, '2026-03-01', 2, 'm1,m2')")
    book = _book(tmp_path, Clock(), max_model_versions=2)
    charge = book.charge("bank", [A, B], "m3")
    assert charge.over_versions == {A} and not charge.over_budget
    assert not book.charge("bank", [A], "m2").refused

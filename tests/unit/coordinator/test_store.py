"""The coordinator's store: a job id is never replaced, whatever its kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.store import JobExists, Store


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "coordinator.sqlite")
    yield opened
    opened.close()


def test_an_existing_job_of_any_kind_is_never_replaced(store: Store) -> None:
    store.create_job("job-1", "vlr", ["bank", "core"], {"align_job": "a"})
    store.update_job("job-1", state="done", metrics={"model_id": "m-v1"})

    with pytest.raises(JobExists, match=r"job job-1 exists \(a vlr job, done\); choose another"):
        store.create_job("job-1", "align", ["bank", "core"])

    kept = store.job("job-1")
    assert kept is not None and (kept.kind, kept.state) == ("vlr", "done")
    assert kept.metrics == {"model_id": "m-v1"} and kept.config == {"align_job": "a"}


def test_the_id_of_a_deleted_job_whose_model_lives_on_stays_taken(store: Store) -> None:
    store.create_job("tr", "vlr", ["bank", "core"])
    model = store.register_model("m", "vlr", "tr", ["bank", "core"], {})
    assert store.model_of_job("tr") == model

    assert store.delete_job("tr") and store.job("tr") is None
    assert not store.delete_job("tr")
    with pytest.raises(JobExists, match="trained model m-v1"):
        store.create_job("tr", "align", ["bank", "core"])
    assert [m.model_id for m in store.models()] == ["m-v1"]


def test_pseudonym_evaluations_are_counted_per_party_and_day(store: Store) -> None:
    assert store.charge_evaluations("core", "2026-03-01", 4, cap=5) is None
    assert store.charge_evaluations("core", "2026-03-01", 2, cap=5) == 4  # refused, not counted
    assert store.charge_evaluations("core", "2026-03-01", 1, cap=5) is None
    assert store.charge_evaluations("tax", "2026-03-01", 5, cap=5) is None
    assert store.charge_evaluations("core", "2026-03-02", 5, cap=5) is None  # a new day

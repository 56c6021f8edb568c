"""Alignments bound to the table they were made on: a changed or unfingerprinted one is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from node.alignment import AlignmentStale, AlignmentStore, FeatureAlignment, TableFingerprint

IDS = [f"id-{k}" for k in range(50)]


def _verify(store: AlignmentStore, job: str, ids: list[str]) -> None:
    store.verify(job, ids, "core", "core.csv", "bank")


def test_fingerprint_changes_with_order_content_and_boundaries() -> None:
    base = TableFingerprint.of(IDS)
    assert base == TableFingerprint.of(list(IDS))
    assert base.rows == 50 and len(base.sha256) == 64
    assert TableFingerprint.of(IDS[::-1]) != base  # same ids, another order
    assert TableFingerprint.of(IDS[:-1]) != base
    assert TableFingerprint.of(["ab", "c"]) != TableFingerprint.of(["a", "bc"])


def test_an_alignment_of_the_same_table_passes(tmp_path: Path) -> None:
    store = AlignmentStore(tmp_path)
    store.save_fingerprint("al-1", IDS)
    store.save_feature("al-1", FeatureAlignment(n_rows=3, positions=np.arange(3),
                                                own_rows=np.arange(3)))
    _verify(store, "al-1", list(IDS))
    assert store.load_feature("al-1").n_rows == 3


def test_a_shuffled_table_is_refused_naming_table_alignment_and_fix(tmp_path: Path) -> None:
    store = AlignmentStore(tmp_path)
    store.save_fingerprint("al-1", IDS)
    shuffled = list(np.random.default_rng(1).permutation(IDS))
    with pytest.raises(AlignmentStale) as err:
        _verify(store, "al-1", shuffled)
    message = str(err.value)
    assert "core: table core.csv changed since alignment al-1" in message
    assert "fedcredit align --label bank --job-id NEW" in message
    assert "id-" not in message  # no id, no hash in what the user (or a log) sees
    assert TableFingerprint.of(IDS).sha256 not in message


def test_an_alignment_without_fingerprint_or_missing_is_refused(tmp_path: Path) -> None:
    store = AlignmentStore(tmp_path)
    store.save_feature("old", FeatureAlignment(n_rows=1, positions=np.arange(1),
                                               own_rows=np.arange(1)))
    with pytest.raises(AlignmentStale, match="old was saved without a fingerprint of table "
                                             "core.csv.*fedcredit align"):
        _verify(store, "old", IDS)
    with pytest.raises(AlignmentStale, match="no alignment nowhere here"):
        _verify(store, "nowhere", IDS)
    (store.root / "old" / "table.json").write_text("{broken")
    with pytest.raises(AlignmentStale, match="unreadable table fingerprint"):
        _verify(store, "old", IDS)


def test_fingerprint_stays_in_the_state_directory_and_a_job_id_is_not_reused(
        tmp_path: Path) -> None:
    store = AlignmentStore(tmp_path)
    store.save_fingerprint("al-1", IDS)
    assert [p.name for p in (tmp_path / "alignment" / "al-1").iterdir()] == ["table.json"]
    store.save_fingerprint("al-1", IDS)  # the label node aligns with several peers per job
    with pytest.raises(AlignmentStale, match="another version of this table"):
        store.save_fingerprint("al-1", IDS[::-1])


def test_job_order_is_never_silently_redrawn(tmp_path: Path) -> None:
    store = AlignmentStore(tmp_path)
    order = store.job_order("al-1", 50)
    assert np.array_equal(store.job_order("al-1", 50), order)
    assert np.array_equal(store.load_order("al-1"), order)
    with pytest.raises(AlignmentStale, match="made for a table of 50 rows, the table now has 49"):
        store.job_order("al-1", 49)
    with pytest.raises(AlignmentStale, match="holds no row order"):
        store.load_order("al-2")

"""Live data: reloads swap whole snapshots, refuse bad tables and keep the last good one."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from common.audit import AuditLog, read_audit_log
from common.errors import DataValidationError
from node.alignment import AlignmentStale, AlignmentStore
from node.config import DataConfig
from node.datasource import load_table
from node.snapshot import LiveTable, public_reason, snapshot_version
from node.snapshot_versions import SnapshotVersions

IDS = [f"E{i:03d}" for i in range(6)]


def _write(path: Path, values: list[str], ids: list[str] = IDS) -> None:
    text = "id,orders\n" + "".join(f"{i},{v}\n" for i, v in zip(ids, values, strict=True))
    path.write_text(text)
    stat = path.stat()  # a rewrite within the same mtime tick must still be seen
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


@pytest.fixture()
def live(tmp_path: Path) -> LiveTable:
    path = tmp_path / "core.csv"
    _write(path, ["1", "2", "3", "4", "5", "6"])
    cfg = DataConfig(source="csv", path=path, id_format="any")
    audit = AuditLog(tmp_path / "audit.jsonl", actor="core")
    return LiveTable(cfg, "feature", SnapshotVersions.open(tmp_path), audit,
                     load_table(cfg, "feature"))


def test_an_unchanged_file_is_not_read_again(live: LiveTable) -> None:
    first = live.current()
    calls: list[int] = []
    live.loader = lambda cfg, role: calls.append(1) or load_table(cfg, role)  # type: ignore[func-returns-value]
    assert live.reload().outcome == "unchanged"
    assert not calls and live.current() is first


def test_a_changed_file_gets_a_new_version_and_the_old_snapshot_stays_whole(
        live: LiveTable) -> None:
    held = live.current()  # a request that started before the reload
    assert held.version.startswith("v1-")
    assert live.cfg.path is not None
    _write(live.cfg.path, ["10", "2", "3", "4", "5", "6"])
    result = live.reload()
    assert result.outcome == "loaded" and result.snapshot.version.startswith("v2-")
    assert live.current().table.X[0, 0] == 10.0
    assert held.table.X[0, 0] == 1.0  # the request keeps what it started with
    assert live.audit is not None
    assert any(e.event == "data.loaded" for e in read_audit_log(live.audit.path))


def test_a_rewrite_with_the_same_content_keeps_the_version(live: LiveTable) -> None:
    version = live.current().version
    assert live.cfg.path is not None
    _write(live.cfg.path, ["1", "2", "3", "4", "5", "6"])
    assert live.reload().outcome == "unchanged"
    assert live.current().version == version


def test_a_bad_table_is_refused_named_and_audited_and_the_last_good_one_served(
        live: LiveTable) -> None:
    good = live.current()
    assert live.cfg.path is not None
    _write(live.cfg.path, ["1", "secret-value", "3", "4", "5", "6"])
    live.changed.clear()
    result = live.reload()
    assert result.outcome == "refused"
    assert live.current().table is good.table and live.current().version == good.version
    assert live.refusal is not None and "'orders'" in live.refusal.reason
    assert "secret-value" not in live.refusal.reason  # never a value to the coordinator
    assert live.changed.is_set()  # the heartbeat reports it at once
    assert live.audit is not None
    refused = [e for e in read_audit_log(live.audit.path) if e.event == "data.refused"]
    assert refused and "secret-value" not in str(refused[-1].details)
    assert live.reload().outcome == "unchanged"  # not read again until it changes
    _write(live.cfg.path, ["7", "2", "3", "4", "5", "6"])
    assert live.reload().outcome == "loaded"
    assert live.refusal is None and live.current().version.startswith("v2-")


def test_an_operator_reload_reads_even_an_unchanged_file(live: LiveTable) -> None:
    calls: list[int] = []
    live.loader = lambda cfg, role: calls.append(1) or load_table(cfg, role)  # type: ignore[func-returns-value]
    assert live.reload(force=True).outcome == "unchanged"
    assert calls == [1]


def test_a_sql_source_runs_its_query_again(tmp_path: Path) -> None:
    path = tmp_path / "core.csv"
    _write(path, ["1", "2", "3", "4", "5", "6"])
    cfg = DataConfig(source="sql", query="SELECT * FROM read_csv('core.csv', all_varchar=true)",
                     base_dir=tmp_path, id_format="any")
    live = LiveTable(cfg, "feature", SnapshotVersions.open(tmp_path), None,
                     load_table(cfg, "feature"))
    assert live.reload().outcome == "unchanged"
    _write(path, ["9", "2", "3", "4", "5", "6"])
    assert live.reload().outcome == "loaded"


def test_concurrent_readers_always_see_a_whole_snapshot(live: LiveTable) -> None:
    assert live.cfg.path is not None
    stop, seen = threading.Event(), []

    def reader() -> None:
        while not stop.is_set():
            snap = live.current()
            seen.append(snap.table.rows == len(snap.table.ids) == snap.table.X.shape[0])

    thread = threading.Thread(target=reader)
    thread.start()
    for k in range(5):
        _write(live.cfg.path, [str(k + 20)] + ["2", "3", "4", "5", "6"])
        live.reload()
    stop.set()
    thread.join()
    assert seen and all(seen)


def test_public_reason_names_columns_not_values() -> None:
    err = DataValidationError("x.csv: cannot read the table: Invalid Input 'abc' at line 3")
    assert public_reason(err) == "x.csv: cannot read the table"


def test_an_alignment_refuses_a_newer_snapshot_and_says_so(tmp_path: Path) -> None:
    store = AlignmentStore(tmp_path)
    store.save_fingerprint("job-1", IDS, "v1-aaaaaaaaaaaa")
    store.verify("job-1", IDS, "core", "core.csv", "bank", "v2-bbbbbbbbbbbb")  # same ids: fine
    with pytest.raises(AlignmentStale, match=r"newer data snapshot \(v2-cccccccccccc\).*"
                                             r"\(v1-aaaaaaaaaaaa\)"):
        store.verify("job-1", list(reversed(IDS)), "core", "core.csv", "bank", "v2-cccccccccccc")


def test_a_version_names_content_across_reverts_and_restarts(live: LiveTable,
                                                               tmp_path: Path) -> None:
    assert live.cfg.path is not None
    original = live.current().version
    _write(live.cfg.path, ["10", "2", "3", "4", "5", "6"])
    changed = live.reload().snapshot.version
    assert changed.startswith("v2-") and changed != original
    _write(live.cfg.path, ["1", "2", "3", "4", "5", "6"])  # put back as it was
    result = live.reload()
    assert result.outcome == "loaded" and result.snapshot.version == original
    restarted = LiveTable(live.cfg, "feature", SnapshotVersions.open(tmp_path), None,
                          load_table(live.cfg, "feature"))  # a new process would count again
    assert restarted.current().version == original
    assert snapshot_version(load_table(live.cfg, "feature"), restarted.versions) == original
    _write(live.cfg.path, ["10", "2", "3", "4", "5", "6"])
    assert restarted.reload().snapshot.version == changed
    _write(live.cfg.path, ["11", "2", "3", "4", "5", "6"])
    assert restarted.reload().snapshot.version.startswith("v3-")  # new content: the next number

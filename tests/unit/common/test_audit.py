"""Tests for the hash-chained audit log: appends, recovery, tamper detection, id hashing."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.audit import (
    GENESIS_HASH,
    AuditLog,
    hash_identifier,
    read_audit_log,
    verify_audit_log,
)
from common.errors import AuditError

KEY = b"k" * 32
VALID_USCC = "91350100M000100Y43"


def _write_three(path: Path) -> AuditLog:
    log = AuditLog(path, actor="bank-a")
    log.append("node.register", peer="coordinator", purpose="registration", rows=100)
    log.append("psi.start", job="job-1", peer="core-1", purpose="alignment", rows=100)
    log.append("score.request", job="job-2", peer="core-1", purpose="scoring",
               consent="consent-7", rows=3, details={"ids": hash_identifier(KEY, VALID_USCC)})
    return log


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_entries_are_chained_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_three(path)

    entries = list(read_audit_log(path))
    report = verify_audit_log(path)

    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS_HASH
    assert entries[1].prev_hash == entries[0].hash and entries[2].prev_hash == entries[1].hash
    assert entries[2].actor == "bank-a" and entries[2].consent == "consent-7"
    assert entries[0].time.endswith("+00:00")
    assert (report.ok, report.entries, report.first_bad) == (True, 3, None)
    assert report.last_hash == entries[2].hash
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_reopening_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = _write_three(path)

    entry = AuditLog(path, actor="bank-a").append("psi.accept", job="job-1", rows=50)

    assert entry.seq == 4 and entry.prev_hash == first.head[1]
    assert verify_audit_log(path).ok


def test_two_writers_on_one_file_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    one, two = AuditLog(path, actor="bank-a"), AuditLog(path, actor="bank-a-cli")

    for _ in range(3):
        one.append("a")
        two.append("b")

    assert verify_audit_log(path).entries == 6


def test_concurrent_appends_from_threads(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, actor="coordinator")

    def work() -> None:
        for _ in range(10):
            log.append("tick", details={"thread": threading.get_ident()})

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    report = verify_audit_log(path)
    assert (report.ok, report.entries) == (True, 40)


@pytest.mark.parametrize(
    ("field", "value"),
    [("rows", 101), ("peer", "tax"), ("purpose", "marketing"), ("time", "2020-01-01T00:00:00"),
     ("details", {"extra": 1}), ("actor", "mallory"), ("consent", "forged")],
)
def test_edited_field_is_detected(tmp_path: Path, field: str, value: object) -> None:
    path = tmp_path / "audit.jsonl"
    _write_three(path)
    lines = _lines(path)
    entry = json.loads(lines[1])
    entry[field] = value
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n"
    path.write_text("".join(lines))

    report = verify_audit_log(path)

    assert (report.ok, report.entries, report.first_bad) == (False, 1, 2)
    assert "does not match its hash" in report.reason


def test_recomputed_hash_breaks_the_next_link(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_three(path)
    lines = _lines(path)
    entry = json.loads(lines[0])
    entry["rows"] = 1
    del entry["hash"]
    from common.audit import _entry_hash  # the forger knows the algorithm

    entry["hash"] = _entry_hash(entry)
    lines[0] = json.dumps(entry) + "\n"
    path.write_text("".join(lines))

    report = verify_audit_log(path)

    assert (report.ok, report.first_bad) == (False, 2)
    assert "previous entry" in report.reason


def test_deleted_line_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_three(path)
    lines = _lines(path)
    path.write_text(lines[0] + lines[2])

    report = verify_audit_log(path)

    assert (report.ok, report.first_bad) == (False, 2)
    assert "deleted" in report.reason


def test_reordered_lines_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_three(path)
    lines = _lines(path)
    path.write_text(lines[0] + lines[2] + lines[1])

    assert verify_audit_log(path).first_bad == 2


def test_truncation_is_detected_with_an_anchor(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    head = _write_three(path).head[1]
    path.write_text("".join(_lines(path)[:2]))

    assert verify_audit_log(path).ok  # the chain alone cannot see a lost tail
    report = verify_audit_log(path, anchor=head)
    assert not report.ok and "truncated" in report.reason


def test_garbage_and_torn_lines_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_three(path)
    text = path.read_text()

    path.write_text(text + "not json\n")
    assert verify_audit_log(path).first_bad == 4
    path.write_text(text[:-10])
    assert verify_audit_log(path).first_bad == 3
    with pytest.raises(AuditError, match="incomplete line"):
        AuditLog(path, actor="bank-a")


def test_opening_a_log_with_a_forged_tail_refuses_to_append(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_three(path)
    path.write_text(path.read_text().replace('"rows":3', '"rows":4'))

    with pytest.raises(AuditError, match="does not match its hash"):
        AuditLog(path, actor="bank-a")


def test_missing_log_is_reported_not_ok(tmp_path: Path) -> None:
    report = verify_audit_log(tmp_path / "none.jsonl")

    assert not report.ok and "cannot read" in report.reason


def test_raw_enterprise_ids_are_refused(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", actor="core-1")

    with pytest.raises(AuditError, match="raw enterprise id"):
        log.append("score.answer", consent=f"consent for {VALID_USCC}")
    with pytest.raises(AuditError, match="raw enterprise id"):
        log.append("score.answer", details={"ids": [VALID_USCC]})
    # an 18-character token whose check character is wrong is not an id
    log.append("score.answer", details={"ref": "91350100M000100Y44"})


def test_invalid_fields_are_refused(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", actor="core-1")

    with pytest.raises(AuditError, match="non-negative integer"):
        log.append("x", rows=-1)
    with pytest.raises(AuditError, match="plain JSON"):
        log.append("x", details={"key": b"secret"})
    with pytest.raises(AuditError, match="non-empty"):
        log.append("")
    assert verify_audit_log(log.path).entries == 0


def test_hash_identifier_is_keyed_hmac() -> None:
    digest = hash_identifier(KEY, VALID_USCC)

    assert len(digest) == 64 and digest == hash_identifier(KEY, VALID_USCC)
    assert digest != hash_identifier(b"j" * 32, VALID_USCC)
    assert VALID_USCC not in digest
    with pytest.raises(AuditError, match="at least 16 bytes"):
        hash_identifier(b"short", VALID_USCC)


@settings(max_examples=30)
@given(details=st.dictionaries(st.text(max_size=8),
                               st.one_of(st.integers(), st.text(max_size=20), st.booleans(),
                                         st.none()),
                               max_size=4))
def test_any_plain_details_round_trip_and_verify(tmp_path_factory: pytest.TempPathFactory,
                                                 details: dict[str, object]) -> None:
    path = tmp_path_factory.mktemp("prop") / "audit.jsonl"
    log = AuditLog(path, actor="bank-a")

    entry = log.append("event", details=details)

    assert list(read_audit_log(path)) == [entry]
    assert verify_audit_log(path).ok

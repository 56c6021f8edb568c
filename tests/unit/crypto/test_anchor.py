"""Signed audit heads: signature checks, and a log cut short or rewritten against its anchors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from common.audit import AuditLog, verify_against_anchors, verify_audit_log
from common.errors import TrustError
from crypto.anchor import read_anchors, sign_anchor, verify_anchor, write_anchors
from crypto.pki import init_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    init_pki(folder, ["bank", "core"])
    return folder


def _log(path: Path, n: int) -> AuditLog:
    log = AuditLog(path, actor="bank")
    for i in range(n):
        log.append("train.step", job="j", rows=i)
    return log


def test_an_anchor_verifies_only_for_its_own_party_and_signature(pki: Path,
                                                                 tmp_path: Path) -> None:
    key, cert, ca = ((pki / f).read_bytes() for f in ("bank.key", "bank.crt", "ca.crt"))
    anchor = sign_anchor(key, cert, "bank", 3, "ab" * 32)
    verify_anchor(ca, anchor, "bank")
    write_anchors(tmp_path / "a.jsonl", [anchor])
    assert read_anchors(tmp_path / "a.jsonl") == [anchor]
    with pytest.raises(TrustError, match="expected"):
        verify_anchor(ca, anchor, "core")
    forged = sign_anchor((pki / "core.key").read_bytes(), cert, "bank", 3, "ab" * 32)
    with pytest.raises(TrustError, match="not signed by bank"):
        verify_anchor(ca, forged)
    moved = sign_anchor(key, cert, "bank", 4, "ab" * 32)
    with pytest.raises(TrustError, match="not signed"):
        verify_anchor(ca, type(anchor)(**{**moved.__dict__, "seq": 5}))


def test_a_truncated_log_fails_against_its_anchor(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = _log(path, 5)
    head = log.head
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:-1]))
    assert verify_audit_log(path).ok  # the chain alone cannot tell
    report = verify_against_anchors(path, [head])
    assert not report.ok and report.first_bad == 5 and "truncated" in report.reason


def test_a_rewritten_and_rehashed_log_fails_against_its_anchor(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = _log(path, 6)
    early = (3, [json.loads(x) for x in path.read_text().splitlines()][2]["hash"])
    head = log.head
    rehash(path, edit_seq=5)
    assert verify_audit_log(path).ok
    report = verify_against_anchors(path, [early, head])
    assert not report.ok and report.first_bad == 6 and "rewritten" in report.reason
    assert "after 3" in report.reason
    assert verify_against_anchors(path, [early]).ok


def rehash(path: Path, edit_seq: int) -> None:
    """Change entry `edit_seq`'s rows and re-hash the chain from there (a careful forger)."""
    entries = [json.loads(x) for x in path.read_text().splitlines()]
    prev = entries[edit_seq - 2]["hash"] if edit_seq > 1 else "0" * 64
    for entry in entries[edit_seq - 1:]:
        if entry["seq"] == edit_seq:
            entry["rows"] = (entry["rows"] or 0) + 1000
        entry["prev_hash"] = prev
        body = {k: v for k, v in entry.items() if k != "hash"}
        entry["hash"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                                  ensure_ascii=False).encode()).hexdigest()
        prev = entry["hash"]
    path.write_text("".join(json.dumps(e, sort_keys=True, separators=(",", ":"),
                                       ensure_ascii=False) + "\n" for e in entries))

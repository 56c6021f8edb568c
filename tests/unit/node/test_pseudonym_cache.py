"""The bank's pseudonym cache: kept across restarts, dropped with the key, private."""

from __future__ import annotations

from pathlib import Path

from node.scoring.pseudonym_cache import PseudonymCache


def test_pseudonyms_are_kept_across_a_restart_under_their_key(tmp_path: Path) -> None:
    path = tmp_path / "scoring" / "pseudonyms.sqlite"
    cache = PseudonymCache(path, memory_ids=2)
    cache.store("key-1", {"a": b"A" * 16, "b": b"B" * 16, "c": b"C" * 16})
    assert cache.lookup(["a", "x", "c"]) == ({"a": b"A" * 16, "c": b"C" * 16}, "key-1")
    cache.close()
    assert path.stat().st_mode & 0o777 == 0o600

    reopened = PseudonymCache(path)
    assert reopened.lookup(["b"]) == ({"b": b"B" * 16}, "key-1")
    reopened.store("key-2", {"x": b"X" * 16})  # the coordinator's key changed
    assert reopened.lookup(["a", "b", "x"]) == ({"x": b"X" * 16}, "key-2")
    reopened.forget()
    assert reopened.lookup(["x"]) == ({}, "")
    reopened.close()

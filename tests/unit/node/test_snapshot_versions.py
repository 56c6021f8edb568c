"""The snapshot version registry: one number per content, agreed by every process and restart."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from node.snapshot_versions import (
    KEY_FILE,
    REGISTRY_FILE,
    SnapshotRegistryError,
    SnapshotVersions,
)

ROOT = Path(__file__).resolve().parents[3]
SHARED = [f"{k:x}" * 64 for k in range(4)]  # digests both processes register

_REGISTER = """
import json, sys
from pathlib import Path
from node.snapshot_versions import SnapshotVersions
state, own = Path(sys.argv[1]), sys.argv[2]
shared = [f"{k:x}" * 64 for k in range(4)]
versions = SnapshotVersions.open(state)
seen = {}
for round in range(30):
    for digest in shared + [f"{own}{round:02d}" + "e" * 61]:
        seen[digest] = versions.version(digest)
print(json.dumps(seen))
"""


def test_two_processes_registering_at_once_agree(tmp_path: Path) -> None:
    state = tmp_path / "state"  # neither the key nor the registry exists yet: both make them
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _REGISTER, str(state), own], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for own in ("a", "b")]
    found = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        found.append(json.loads(out))
    first, second = found
    assert all(first[d] == second[d] for d in SHARED)  # same content, same version
    everything = {**first, **second}
    assert len(everything) == len(SHARED) + 60
    numbers = sorted(int(v.split("-")[0][1:]) for v in everything.values())
    assert numbers == list(range(1, len(everything) + 1))  # one number each, no gaps
    again = SnapshotVersions.open(state)
    assert all(again.version(d) == v for d, v in everything.items())


def test_threads_with_their_own_connections_agree(tmp_path: Path) -> None:
    SnapshotVersions.open(tmp_path)  # the key exists before the threads start
    results: list[dict[str, str]] = []
    errors: list[BaseException] = []

    def register(own: int) -> None:
        try:
            versions = SnapshotVersions.open(tmp_path)
            mine = [f"{own:x}{k:02d}" + "f" * 61 for k in range(10)]
            results.append({d: versions.version(d) for d in SHARED + mine + SHARED})
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=register, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 4
    assert len({tuple(r[d] for d in SHARED) for r in results}) == 1
    every = {v for r in results for v in r.values()}
    assert len(every) == len(SHARED) + 40


def test_a_restart_keeps_the_numbers_and_old_content_gets_its_old_version(
        tmp_path: Path) -> None:
    versions = SnapshotVersions.open(tmp_path)
    a, b, c = ("a" * 64, "b" * 64, "c" * 64)
    assert [versions.version(d) for d in (a, b, a)] == ["v1-aaaaaaaaaaaa", "v2-bbbbbbbbbbbb",
                                                        "v1-aaaaaaaaaaaa"]
    versions.close()
    restarted = SnapshotVersions.open(tmp_path)
    assert restarted.version(b) == "v2-bbbbbbbbbbbb"
    assert restarted.version(c) == "v3-cccccccccccc"
    assert restarted.version(a) == "v1-aaaaaaaaaaaa"
    assert restarted.key == versions.key


def test_a_damaged_registry_is_an_error_naming_it(tmp_path: Path) -> None:
    SnapshotVersions.open(tmp_path).close()
    path = tmp_path / REGISTRY_FILE
    path.write_bytes(b"not a database " * 100)
    with pytest.raises(SnapshotRegistryError,
                       match=f"{re.escape(str(path))}.*restore it from a backup"):
        SnapshotVersions.open(tmp_path)


@contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """`path` made unwritable for this process: chmod, or for root (who ignores modes) the
    immutable attribute."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(0o644)
        return
    chattr = shutil.which("chattr")
    done = (subprocess.run([chattr, "+i", str(path)], capture_output=True, check=False)
            if chattr else None)
    if done is None or done.returncode != 0:
        pytest.skip("running as root where the immutable attribute cannot be set")
    try:
        yield
    finally:
        subprocess.run([str(chattr), "-i", str(path)], check=True)


def test_a_read_only_registry_is_an_error_naming_it_when_opened(tmp_path: Path) -> None:
    versions = SnapshotVersions.open(tmp_path)
    versions.version("a" * 64)
    versions.close()
    path = tmp_path / REGISTRY_FILE
    with _read_only(path), pytest.raises(
            SnapshotRegistryError, match=f"{re.escape(str(path))}.*check their permissions"):
        SnapshotVersions.open(tmp_path)  # at start-up, not at the first new content


def test_a_replaced_or_lost_key_is_refused_not_silently_renumbered(tmp_path: Path) -> None:
    SnapshotVersions.open(tmp_path).version("a" * 64)
    key = tmp_path / KEY_FILE
    original = key.read_bytes()
    key.unlink()
    with pytest.raises(SnapshotRegistryError, match=f"{re.escape(str(key))} is missing"):
        SnapshotVersions.open(tmp_path)
    assert not key.exists()  # no new key was made
    key.write_bytes(bytes(32))
    with pytest.raises(SnapshotRegistryError, match="another snapshot key"):
        SnapshotVersions.open(tmp_path)
    key.write_bytes(b"short")
    with pytest.raises(SnapshotRegistryError, match=f"{re.escape(str(key))} holds 5 bytes"):
        SnapshotVersions.open(tmp_path)
    key.write_bytes(original)
    assert SnapshotVersions.open(tmp_path).version("a" * 64) == "v1-aaaaaaaaaaaa"

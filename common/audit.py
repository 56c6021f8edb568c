"""Append-only, hash-chained audit log (one JSON line per entry) and its verifier."""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common.errors import AuditError
from common.uscc import ALPHABET as USCC_ALPHABET
from common.uscc import LENGTH as USCC_LENGTH
from common.uscc import is_valid_uscc

GENESIS_HASH = "0" * 64
_FIELDS = ("seq", "time", "actor", "event", "job", "peer", "purpose", "consent", "rows",
           "details", "prev_hash", "hash")
_TAIL_BLOCK = 64 * 1024
# An 18-character token in the USCC alphabet standing alone; confirmed by its check character.
_USCC_TOKEN = re.compile(rf"(?<![0-9A-Za-z])[{USCC_ALPHABET}]{{{USCC_LENGTH}}}(?![0-9A-Za-z])")


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log. `hash` is SHA-256 over the canonical JSON of the other fields."""

    seq: int
    time: str
    actor: str
    event: str
    job: str | None
    peer: str | None
    purpose: str | None
    consent: str | None
    rows: int | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_json(self) -> str:
        return _canonical(asdict(self)).decode("utf-8")


@dataclass(frozen=True)
class AuditReport:
    """What `verify_audit_log` found: `first_bad` is the 1-based line of the first broken entry."""

    ok: bool
    entries: int  # entries that verified, in order, before the first broken one
    first_bad: int | None
    reason: str
    last_hash: str = GENESIS_HASH  # hash of the last good entry; keep it as an anchor


def hash_identifier(key: bytes, value: str) -> str:
    """HMAC-SHA256 (hex) of an identifier, for logging an enterprise reference without the id."""
    if len(key) < 16:
        raise AuditError("identifier hashing key must be at least 16 bytes")
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


class AuditLog:
    """An append-only audit log file written by one actor (this process).

    Appends are serialised by a lock (threads) and an exclusive file lock (other processes writing
    the same file), each line is written with one `write` on an O_APPEND descriptor and fsynced.
    """

    def __init__(self, path: Path | str, actor: str) -> None:
        if not actor:
            raise AuditError("an audit log needs the name of the actor writing it")
        self.path = Path(path)
        self.actor = actor
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o600)
        try:
            self._seq, self._hash, self._size = _recover_tail(fd, self.path)
        finally:
            os.close(fd)

    @property
    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last entry; store it elsewhere to detect a truncated log later."""
        with self._lock:
            return self._seq, self._hash

    def append(
        self,
        event: str,
        *,
        job: str | None = None,
        peer: str | None = None,
        purpose: str | None = None,
        consent: str | None = None,
        rows: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Add one entry chained to the previous one and flush it to disk before returning."""
        if not isinstance(event, str) or not event:
            raise AuditError("audit event must be a non-empty string")
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 0):
            raise AuditError(f"audit rows must be a non-negative integer, got {rows!r}")
        facts: dict[str, Any] = json.loads(_canonical(dict(details or {})))  # what disk will hold
        strings = {"event": event, "job": job, "peer": peer, "purpose": purpose, "consent": consent}
        for name, value in strings.items():
            if value is not None and not isinstance(value, str):
                raise AuditError(f"audit field {name} must be a string, got {type(value).__name__}")
        _refuse_raw_ids({**strings, "details": facts})
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_size != self._size:  # another writer appended meanwhile
                    self._seq, self._hash, self._size = _recover_tail(fd, self.path)
                body: dict[str, Any] = {
                    "seq": self._seq + 1,
                    "time": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
                    "actor": self.actor, "event": event, "job": job, "peer": peer,
                    "purpose": purpose, "consent": consent, "rows": rows, "details": facts,
                    "prev_hash": self._hash,
                }
                entry = AuditEntry(**body, hash=_entry_hash(body))
                line = entry.to_json().encode("utf-8") + b"\n"
                written = os.write(fd, line)
                if written != len(line):
                    raise AuditError(f"short write to audit log {self.path}: "
                                     f"{written} of {len(line)} bytes")
                os.fsync(fd)
            except OSError as err:
                raise AuditError(f"cannot write audit log {self.path}: {err.strerror}") from err
            finally:
                os.close(fd)  # also releases the file lock
            self._seq, self._hash, self._size = entry.seq, entry.hash, self._size + len(line)
            return entry


def read_audit_log(path: Path | str) -> Iterator[AuditEntry]:
    """Yield the entries of a log without checking the chain (use `verify_audit_log` for that)."""
    with Path(path).open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield _parse(raw)
            except ValueError as err:
                raise AuditError(f"{path} line {number}: {err}") from err


def verify_audit_log(path: Path | str, *, anchor: str | None = None) -> AuditReport:
    """Check every entry's hash, sequence and link to its predecessor; report the first break.

    The chain alone cannot tell a log that lost its last lines from a shorter log: pass a
    previously recorded head hash as `anchor` and the log must still contain that entry.
    """
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as err:
        return AuditReport(False, 0, None, f"cannot read audit log {path}: {err.strerror}")
    good, prev, anchored = 0, GENESIS_HASH, anchor is None
    with handle:
        for number, raw in enumerate(handle, start=1):
            reason = _check_line(raw, number, prev)
            if reason is not None:
                return AuditReport(False, good, number, f"line {number}: {reason}", prev)
            good += 1
            prev = _parse(raw).hash
            anchored = anchored or prev == anchor
    if not anchored:
        return AuditReport(False, good, None,
                           f"anchor {anchor} not found: the log was truncated or replaced", prev)
    return AuditReport(True, good, None, f"{good} entries, chain intact", prev)


# helpers ------------------------------------------------------------------------------------
def _canonical(obj: Any) -> bytes:
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as err:
        raise AuditError(f"audit entry is not plain JSON (str, int, float, bool, None, "
                         f"lists and dicts with string keys): {err}") from err


def _entry_hash(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical(dict(body))).hexdigest()


def _parse(raw: bytes) -> AuditEntry:
    if not raw.endswith(b"\n"):
        raise ValueError("incomplete line (no newline): a write was cut off")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"not JSON: {err}") from err
    if not isinstance(data, dict) or set(data) != set(_FIELDS):
        raise ValueError(f"not an audit entry: expected exactly the fields {', '.join(_FIELDS)}")
    checks: dict[str, tuple[type, ...]] = {
        "seq": (int,), "time": (str,), "actor": (str,), "event": (str,), "job": (str, type(None)),
        "peer": (str, type(None)), "purpose": (str, type(None)), "consent": (str, type(None)),
        "rows": (int, type(None)), "details": (dict,), "prev_hash": (str,), "hash": (str,),
    }
    for name, types in checks.items():
        if not isinstance(data[name], types) or isinstance(data[name], bool):
            raise ValueError(f"field {name} has the wrong type")
    return AuditEntry(**data)


def _check_line(raw: bytes, number: int, prev: str) -> str | None:
    try:
        entry = _parse(raw)
    except ValueError as err:
        return str(err)
    body = asdict(entry)
    claimed = body.pop("hash")
    if _entry_hash(body) != claimed:
        return "content does not match its hash (the entry was edited)"
    if entry.seq != number:
        return f"sequence {entry.seq} where {number} was expected (a line was deleted or moved)"
    if entry.prev_hash != prev:
        return "does not link to the previous entry (a line was deleted, inserted or moved)"
    return None


def _recover_tail(fd: int, path: Path) -> tuple[int, str, int]:
    """(seq, hash, size) of the file's last entry, checking that entry's own hash."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0, GENESIS_HASH, 0
    block = b""
    start = size
    while start > 0:
        start = max(0, start - _TAIL_BLOCK)
        block = os.pread(fd, size - start, start)
        if block.count(b"\n") >= 2 or start == 0:
            break
    last = block.rstrip(b"\n").rsplit(b"\n", 1)[-1] + b"\n"
    if not block.endswith(b"\n"):
        raise AuditError(f"audit log {path} ends with an incomplete line (a write was cut off); "
                         "check it with `fedcredit audit verify` before appending")
    try:
        entry = _parse(last)
    except ValueError as err:
        raise AuditError(f"last line of audit log {path} is unreadable: {err}") from err
    body = asdict(entry)
    if _entry_hash({k: v for k, v in body.items() if k != "hash"}) != entry.hash:
        raise AuditError(f"last entry of audit log {path} does not match its hash: "
                         "run `fedcredit audit verify` on it")
    return entry.seq, entry.hash, size


def _refuse_raw_ids(fields: Mapping[str, Any]) -> None:
    for text in _strings(fields):
        for token in _USCC_TOKEN.findall(text):
            if is_valid_uscc(token):
                raise AuditError("an audit field holds what looks like a raw enterprise id "
                                 "(Unified Social Credit Code); log hash_identifier(key, id) "
                                 "instead")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def verify_against_anchors(path: Path | str, anchors: Iterable[tuple[int, str]]) -> AuditReport:
    """Check the chain, then that every anchored (seq, hash) is still in the log.

    An anchor past the log's end means the log was truncated; an anchored entry that hashes
    differently means it was rewritten, even when the chain after it was re-hashed to fit.
    `first_bad` names the first entry known bad: the first one missing, or the first anchored
    entry that differs (the rewrite is after the last anchor that still matches).
    """
    report = verify_audit_log(path)
    if not report.ok:
        return report
    wanted = dict(sorted(anchors))
    found: dict[int, str] = {}
    for entry in read_audit_log(path):
        if entry.seq in wanted:
            found[entry.seq] = entry.hash
    good = 0
    for seq, digest in wanted.items():
        if seq > report.entries:
            return AuditReport(False, report.entries, report.entries + 1,
                               f"truncated: the log has {report.entries} entries but entry "
                               f"{seq} was anchored; entries {report.entries + 1} to {seq} "
                               f"are gone", report.last_hash)
        if found.get(seq) != digest:
            return AuditReport(False, good, seq,
                               f"rewritten: entry {seq} does not hash as anchored (the chain "
                               f"was re-hashed after an edit); entries after {good} cannot be "
                               f"trusted", report.last_hash)
        good = seq
    return AuditReport(True, report.entries, None,
                       f"{report.entries} entries, chain intact, {len(wanted)} anchors match "
                       f"(last anchored entry {good})", report.last_hash)

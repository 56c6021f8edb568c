"""A feature node's own ids under the network's pseudonym key, evaluated blinded at the coordinator.

The node blinds the hash of each of its table's ids with a fresh scalar (`crypto.pseudonym`),
has the coordinator raise the points to the pseudonym key in calls of at most 65,536 points, and
unblinds them: the coordinator sees only random points, the node gets its ids' pseudonyms and
nothing for any other id. The index is kept 0600 in `scoring/pseudonyms.bin` beside the key's id
and a fingerprint of the table's ids, and made again when either changes (a reloaded snapshot
with the same ids in the same order keeps it).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from common.errors import ProtocolError
from common.files import atomic_write
from crypto.he import pack_frames, unpack_frames
from crypto.pseudonym import (
    HASH_DOMAIN,
    MAX_POINTS,
    PSEUDONYM_BYTES,
    blind_ids,
    finish,
    new_blinding,
)
from crypto.psi_pool import PSI_POINT_BYTES, PsiWorkers
from node.state import NodeState

IN_FLIGHT = 2  # evaluation calls at the coordinator at once
Evaluate = Callable[[bytes], tuple[bytes, str]]
"""Blinded points -> (the coordinator's raised points, its pseudonym key's id)."""


def table_fingerprint(ids: Sequence[str]) -> bytes:
    digest = hashlib.sha256(b"fedcredit/pseudonym-index/v1\x00")
    for ident in ids:
        digest.update(ident.encode() + b"\x00")
    return digest.digest()


def pseudonyms_for(ids: Sequence[str], evaluate: Evaluate, workers: PsiWorkers | None = None,
                   *, chunk_points: int = MAX_POINTS) -> tuple[bytes, str]:
    """The pseudonyms of `ids` (16 bytes each, in order) and the key's id, through `evaluate`.

    One fresh blinding for the call (its ids are distinct points to the coordinator, as in PSI).
    With `workers` the hashing, blinding and unblinding run in its processes and up to
    `IN_FLIGHT` chunks of `chunk_points` are at the coordinator at once, so this process, its
    workers and the coordinator's work at the same time.
    """
    if not ids:
        return b"", ""
    blinding = new_blinding()
    starts = range(0, len(ids), chunk_points)
    blinded: Iterable[bytes] = (
        (blind_ids(list(ids[i:i + chunk_points]), blinding) for i in starts) if workers is None
        else workers.hash_and_blind_chunks(ids, HASH_DOMAIN, blinding.scalar, chunk_points))

    def one(points: bytes) -> tuple[bytes, str]:
        raised, key_id = evaluate(points)
        return finish(raised, blinding, len(points) // PSI_POINT_BYTES, workers), key_id

    if workers is None or len(starts) == 1:
        answers = [one(points) for points in blinded]
    else:
        with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="pseudonyms") as pool:
            futures = [pool.submit(one, points) for points in blinded]
            answers = [future.result() for future in futures]
    key_ids = {key_id for _, key_id in answers}
    if len(key_ids) != 1:
        raise ProtocolError("the coordinator's pseudonym key changed during one evaluation")
    return b"".join(blob for blob, _ in answers), key_ids.pop()


class PseudonymIndex:
    """Row of each of our pseudonyms under the current key, made once and kept on disk."""

    def __init__(self, state: NodeState, evaluate: Evaluate) -> None:
        self.state = state
        self.evaluate = evaluate
        self.path = state.state_dir / "scoring" / "pseudonyms.bin"
        self.key_id = ""
        self.fingerprint = b""
        self._ids: Sequence[str] | None = None  # the id list `rows` was last checked against
        self.rows: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def current(self, key_id: str, ids: Sequence[str]) -> dict[bytes, int]:
        """Rows of `ids` (the table of the caller's snapshot) by pseudonym under the key named
        `key_id` (made again if the key or the ids changed)."""
        with self._lock:
            if key_id and key_id == self.key_id and ids is self._ids:
                return self.rows  # the same snapshot's list: no need to hash it again
            fingerprint = table_fingerprint(ids)
            if key_id and key_id == self.key_id and fingerprint == self.fingerprint:
                self._ids = ids
                return self.rows
            blob = self._stored(key_id, fingerprint)
            if blob is None:
                blob, made_under = pseudonyms_for(ids, self.evaluate, self.state.workers)
                if key_id and made_under != key_id:
                    raise ProtocolError(f"the coordinator's pseudonym key is {made_under}, the "
                                        f"request's {key_id}: ask again")
                key_id = made_under
                atomic_write(self.path, pack_frames([key_id.encode(), fingerprint, blob]), 0o600)
                self.state.audit.append("pseudonyms.indexed", rows=len(ids),
                                        details={"key": key_id})
            self.rows = {blob[i * PSEUDONYM_BYTES:(i + 1) * PSEUDONYM_BYTES]: i
                         for i in range(len(ids))}
            self.key_id = key_id
            self.fingerprint = fingerprint
            self._ids = ids
            return self.rows

    def _stored(self, key_id: str, fingerprint: bytes) -> bytes | None:
        if not key_id or not self.path.exists():
            return None
        try:
            stored_key, stored_table, blob = unpack_frames(self.path.read_bytes(), max_frames=3)
        except (ValueError, ProtocolError):
            return None
        if stored_key.decode() != key_id or stored_table != fingerprint:
            return None
        return blob

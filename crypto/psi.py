"""ECDH-PSI over Curve25519 (DESIGN §3.1): the label and feature roles as pure state machines.

No gRPC here: the node's handlers move the blobs. A blob is `bytes` of concatenated 32-byte
X25519 u-coordinates (`PSI_POINT_BYTES`), at most `CHUNK_POINTS` points per chunk.

Group operations (from `crypto.psi_pool`, re-exported here):
    new_scalar() -> bytes                         32 secret bytes from `secrets`
    hash_to_points(ids, job_id) -> bytes          H(id): uniform hash to Curve25519, per job
    blind(points, scalar) -> bytes                X25519 of each point; commutative
    PsiWorkers(processes=None)                    process pool (context manager, .close()):
        .hash_and_blind(ids, job_id, scalar) -> bytes, .blind(points, scalar) -> bytes

Roles (L = label node with scalar a, F = feature node with scalar b):
    L = LabelPsi(ids, job_id, workers)            F = FeaturePsi(ids, job_id, workers)
    L.blinded_own() -> chunks of H(x)^a  --->     F.double_blind(chunk) -> H(x)^ab, same order
    L.receive_double_blinded(chunk)     <---
    L.receive_peer_blinded(chunk)       <---      F.blinded_own() -> chunks of H(y)^b
    L.intersection() -> sorted own ids; L.intersection_size() (cardinality-only mode)
    L.peer_indices() -> F's sent positions  --->  F.resolve(peer_indices) -> sorted own ids
    L.matches() -> (own rows, peer positions)     F.resolve_rows(peer_positions) -> own rows
Each side sends its points in a fresh secret order, so positions say nothing about its table.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

from common.errors import DataValidationError, ProtocolError
from crypto.psi_pool import (
    DOMAIN_TAG,
    PSI_POINT_BYTES,
    PsiWorkers,
    blind,
    check_points,
    hash_and_blind,
    hash_to_points,
    new_scalar,
)

__all__ = [
    "CHUNK_POINTS", "CONSTRUCTION", "DOMAIN_TAG", "PSI_POINT_BYTES", "FeaturePsi", "LabelPsi",
    "PsiWorkers", "blind", "hash_and_blind", "hash_to_points", "new_scalar", "run_psi_benchmark",
]

CHUNK_POINTS = 65536  # 2 MiB of points a message
CONSTRUCTION = ("Curve25519 u-coordinates; hash: SHA-512 try-and-increment (uniform, on-curve "
                "only); blind: libsodium X25519, clamped scalars; process pool")

Rows = npt.NDArray[np.int64]


def _secret_order(n: int) -> Rows:
    """A uniformly random permutation of range(n) from `secrets` (argsort of 64-bit keys)."""
    keys = np.frombuffer(secrets.token_bytes(8 * n), dtype=np.uint64)
    return np.argsort(keys, kind="stable").astype(np.int64)


def _own_ids(ids: Sequence[str]) -> list[str]:
    own = list(ids)
    if len(set(own)) != len(own):
        raise DataValidationError("PSI input has duplicate ids; ids must be unique")
    return own


def _check_chunk(chunk: bytes, what: str) -> int:
    count = check_points(chunk, what)
    if count > CHUNK_POINTS:
        raise ProtocolError(f"{what} holds {count} points, more than {CHUNK_POINTS} a chunk")
    return count


class _Role:
    """What both roles share: own ids, a secret scalar, a secret send order."""

    def __init__(self, ids: Sequence[str], job_id: str, workers: PsiWorkers | None = None) -> None:
        self.ids = _own_ids(ids)
        self.job_id = job_id
        self.workers = workers if workers is not None else PsiWorkers(1)
        self._scalar = new_scalar()
        self._order = _secret_order(len(self.ids))  # sent position i carries row _order[i]
        self._lock = threading.Lock()

    @property
    def sent_count(self) -> int:
        """How many points this side sends (its number of ids)."""
        return len(self.ids)

    def blinded_own(self) -> Iterator[bytes]:
        """H(own id)^scalar in the secret order, in chunks; all work is queued on this call."""
        shuffled = [self.ids[row] for row in self._order.tolist()]
        return self.workers.hash_and_blind_chunks(shuffled, self.job_id, self._scalar,
                                                  CHUNK_POINTS)


class LabelPsi(_Role):
    """The label node: sends H(x)^a, gets H(x)^ab and H(y)^b back, and finds the matches."""

    def __init__(self, ids: Sequence[str], job_id: str, workers: PsiWorkers | None = None) -> None:
        super().__init__(ids, job_id, workers)
        self._double: list[bytes] = []
        self._double_points = 0
        self._peer: list[bytes] = []
        self._matches: tuple[Rows, Rows] | None = None

    def receive_double_blinded(self, chunk: bytes) -> None:
        """The peer's H(x)^ab for our next chunk, in the order we sent it."""
        count = _check_chunk(chunk, "double-blinded chunk")
        with self._lock:
            if self._double_points + count > self.sent_count:
                raise ProtocolError(f"peer returned more than the {self.sent_count} points sent")
            self._double.append(bytes(chunk))
            self._double_points += count
            self._matches = None

    def receive_peer_blinded(self, chunk: bytes) -> None:
        """The peer's next chunk of H(y)^b (its secret order), which we raise to H(y)^ba."""
        _check_chunk(chunk, "peer-blinded chunk")
        blinded = self.workers.blind(chunk, self._scalar)
        with self._lock:
            self._peer.append(blinded)
            self._matches = None

    def matches(self) -> tuple[Rows, Rows]:
        """(own rows, peer positions) of every match, ordered by peer position."""
        with self._lock:
            if self._matches is None:
                if self._double_points != self.sent_count:
                    raise ProtocolError(f"peer returned {self._double_points} of the "
                                        f"{self.sent_count} points sent")
                sent, peer = _match(b"".join(self._double), b"".join(self._peer))
                self._matches = (self._order[sent], peer)
            return self._matches

    def intersection_size(self) -> int:
        """How many own ids the peer also holds."""
        return len(self.matches()[0])

    def intersection(self) -> list[str]:
        """Own ids the peer also holds, sorted."""
        return sorted(self.ids[row] for row in self.matches()[0].tolist())

    def peer_indices(self) -> list[int]:
        """Positions, in the peer's sent order, of its matched points (full mode sends these)."""
        return [int(i) for i in self.matches()[1]]


class FeaturePsi(_Role):
    """The feature node: sends H(y)^b, raises the label node's points to H(x)^ab."""

    def double_blind(self, chunk: bytes) -> bytes:
        """H(x)^ab for the label node's chunk of H(x)^a, order preserved."""
        _check_chunk(chunk, "label-blinded chunk")
        return self.workers.blind(chunk, self._scalar)

    def resolve_rows(self, peer_indices: npt.ArrayLike) -> Rows:
        """Own rows behind the given sent positions, in the same order; refuses bad positions."""
        positions = np.asarray(peer_indices)
        if positions.size == 0:
            return np.empty(0, dtype=np.int64)
        if positions.ndim != 1 or not np.issubdtype(positions.dtype, np.integer):
            raise ProtocolError("matched positions must be a flat list of integers")
        positions = positions.astype(np.int64)
        if positions.min() < 0 or positions.max() >= self.sent_count:
            raise ProtocolError(f"matched positions must lie in [0, {self.sent_count}), got "
                                f"[{positions.min()}, {positions.max()}]")
        if len(np.unique(positions)) != len(positions):
            raise ProtocolError("matched positions are repeated")
        rows: Rows = self._order[positions]
        return rows

    def resolve(self, peer_indices: npt.ArrayLike) -> list[str]:
        """Own ids behind the label node's matched positions, sorted."""
        return sorted(self.ids[row] for row in self.resolve_rows(peer_indices).tolist())


def _match(own: bytes, peer: bytes) -> tuple[Rows, Rows]:
    """(own positions, peer positions) of equal points, ordered by peer position.

    One stable sort of both sides' 8-byte prefixes; whole points are compared for the pairs it
    finds. A prefix shared by two points of one side (2^-64-rare, or a peer repeating points)
    falls back to exact dictionary matching.
    """
    n_own = len(own) // PSI_POINT_BYTES
    keys = np.concatenate([np.frombuffer(own, dtype="<u8")[::4],  # first 8 bytes of each point
                           np.frombuffer(peer, dtype="<u8")[::4]])
    order = np.argsort(keys, kind="stable")
    at = np.flatnonzero(keys[order[1:]] == keys[order[:-1]])
    left, right = order[at], order[at + 1]
    if np.any(np.diff(at) == 1) or np.any(left >= n_own) or np.any(right < n_own):
        return _match_exact(own, peer)
    peer_at = right - n_own
    own_points = np.frombuffer(own, dtype=np.uint8).reshape(-1, PSI_POINT_BYTES)
    peer_points = np.frombuffer(peer, dtype=np.uint8).reshape(-1, PSI_POINT_BYTES)
    same = np.all(own_points[left] == peer_points[peer_at], axis=1)
    own_at, peer_at = left[same], peer_at[same]
    by_peer = np.argsort(peer_at, kind="stable")
    return own_at[by_peer].astype(np.int64), peer_at[by_peer].astype(np.int64)


def _match_exact(own: bytes, peer: bytes) -> tuple[Rows, Rows]:
    """Dictionary matching on whole points, for the (2^-64-rare) clash of 8-byte prefixes."""
    size = PSI_POINT_BYTES
    position = {own[i:i + size]: i // size for i in range(0, len(own), size)}
    if len(position) != len(own) // size:
        raise ProtocolError("the peer's double-blinded points repeat")
    seen: set[bytes] = set()
    own_at: list[int] = []
    peer_at: list[int] = []
    for i in range(0, len(peer), size):
        point = peer[i:i + size]
        if point in seen:
            raise ProtocolError("the peer's blinded points repeat")
        seen.add(point)
        found = position.get(point)
        if found is not None:
            own_at.append(found)
            peer_at.append(i // size)
    return np.asarray(own_at, dtype=np.int64), np.asarray(peer_at, dtype=np.int64)


def synthetic_ids(start: int, count: int) -> list[str]:
    """18-character ids shaped like a USCC (not check-digit valid), for benchmarks and tests."""
    return [f"9131{n:014d}" for n in range(start, start + count)]


def run_psi_benchmark(n_ids: int, overlap: float = 0.5, workers: int | None = None) -> dict[
        str, object]:
    """Both roles in this process over the real chunked protocol, `n_ids` ids a side.

    L's and F's own hashing and blinding are queued together, then both cross-blinds, so every
    core stays busy. `seconds` is the protocol's wall time with a warm pool (a running node keeps
    one); starting the pool is reported apart. Raises if the result is not the set intersection.
    """
    if n_ids < 1 or not 0.0 <= overlap <= 1.0:
        raise ValueError("need n_ids >= 1 and 0 <= overlap <= 1")
    common = round(n_ids * overlap)
    label_ids = synthetic_ids(0, n_ids)
    feature_ids = synthetic_ids(n_ids - common, n_ids)
    secrets.SystemRandom().shuffle(feature_ids)
    job_id = "bench-" + secrets.token_hex(4)
    with PsiWorkers(workers) as pool:
        started = time.perf_counter()
        pool.start()
        pool_seconds = time.perf_counter() - started
        started = time.perf_counter()
        label = LabelPsi(label_ids, job_id, pool)
        label_stream = label.blinded_own()  # the workers start on this while F sets up
        feature = FeaturePsi(feature_ids, job_id, pool)
        feature_stream = feature.blinded_own()
        errors: list[BaseException] = []

        def feature_to_label() -> None:
            try:
                for chunk in feature_stream:
                    label.receive_peer_blinded(chunk)
            except BaseException as err:  # re-raised below, in the caller's thread
                errors.append(err)

        relay = threading.Thread(target=feature_to_label, name="psi-bench-f2l")
        relay.start()
        for chunk in label_stream:
            label.receive_double_blinded(feature.double_blind(chunk))
        relay.join()
        if errors:
            raise errors[0]
        own_rows, peer_positions = label.matches()  # what the nodes store: rows, not ids
        feature_rows = feature.resolve_rows(peer_positions)
        seconds = time.perf_counter() - started
        cores = pool.processes
    pairs_agree = [label_ids[r] for r in own_rows.tolist()] == [
        feature_ids[r] for r in feature_rows.tolist()]
    found = label.intersection()
    feature_found = feature.resolve(peer_positions) if pairs_agree else []
    expected = sorted(set(label_ids) & set(feature_ids))
    if found != expected or feature_found != expected:
        raise RuntimeError(f"PSI found {len(found)}/{len(feature_found)} ids, "
                           f"the plaintext intersection has {len(expected)}")
    return {"ids": n_ids, "seconds": round(seconds, 3),
            "core_us_per_id": round(seconds * cores / n_ids * 1e6, 1),
            "intersection": len(found), "cores": cores, "construction": CONSTRUCTION,
            "pool_start_seconds": round(pool_seconds, 3)}

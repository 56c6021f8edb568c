"""PSI group operations on Curve25519 (hash to curve, X25519 blinding) and their process pool."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import secrets
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import gmpy2
from nacl._sodium import ffi, lib  # raw binding: 1.2 µs less per call than nacl.bindings

from common.errors import ProtocolError

PSI_POINT_BYTES = 32
SCALAR_BYTES = 32
DOMAIN_TAG = b"fedcredit/psi/v1"
TASK_POINTS = 8192  # points per pool task: ~0.3 s of work, small enough to balance the cores

_P = gmpy2.mpz(2**255 - 19)
_A = gmpy2.mpz(486662)
_MAX_COUNTER = 255

# Without sodium_init libsodium keeps its portable X25519: 44 µs a call here instead of 31.
if lib.sodium_init() < 0:  # pragma: no cover
    raise ImportError("libsodium failed to initialise")


def new_scalar() -> bytes:
    """A fresh secret PSI scalar: 32 bytes from `secrets` (X25519 clamps it when used)."""
    return secrets.token_bytes(SCALAR_BYTES)


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _job_prefix(job_id: str) -> bytes:
    return _field(DOMAIN_TAG) + _field(job_id.encode())


def hash_to_points(ids: Sequence[str], job_id: str) -> bytes:
    """Hash each id to a Curve25519 point (32-byte canonical u-coordinate); one blob.

    Try-and-increment: SHA-512(len‖"fedcredit/psi/v1" ‖ len‖job ‖ len‖id ‖ counter) gives two
    256-bit candidates; each is reduced mod p and accepted when u³ + A·u² + u is a non-zero
    square (gmpy2's Jacobi symbol), i.e. when u is on Curve25519 itself, never on its twist. The
    first accepted candidate of independent uniform candidates is uniform over the curve's
    u-coordinates (reduction bias 2^-250), so this is a random oracle into the curve; clamped
    X25519 scalars are multiples of 8 and project it onto the prime-order subgroup. The trip
    count depends on the id, but the loop only ever runs over the node's own ids, locally.
    libsodium's `from_uniform` (one Elligator 2 map, not uniform over the group) plus the
    Edwards-to-Montgomery conversion measured 23 µs an id here; this costs 5.4 µs.
    """
    prefix = _job_prefix(job_id)
    sha512 = hashlib.sha512
    from_bytes = gmpy2.mpz.from_bytes
    jacobi = gmpy2.jacobi
    p, a = _P, _A
    out: list[bytes] = []
    append = out.append
    for identifier in ids:
        message = prefix + _field(identifier.encode())
        for counter in range(_MAX_COUNTER + 1):
            digest = sha512(message + counter.to_bytes(1, "big")).digest()
            u = from_bytes(digest[:32], "little")
            if jacobi(u * (u * (u + a) + 1), p) == 1:
                break
            u = from_bytes(digest[32:], "little")
            if jacobi(u * (u * (u + a) + 1), p) == 1:
                break
        else:  # pragma: no cover - 512 non-squares in a row: probability 2^-512
            raise RuntimeError("hash to curve found no point")
        append((u % p).to_bytes(32, "little"))
    return b"".join(out)


def check_points(points: bytes, what: str = "points") -> int:
    """The number of points in a blob; `ProtocolError` if it is not whole points."""
    if not isinstance(points, bytes | bytearray | memoryview):
        raise ProtocolError(f"{what} must be bytes, got {type(points).__name__}")
    count, rest = divmod(len(points), PSI_POINT_BYTES)
    if rest:
        raise ProtocolError(f"{what}: {len(points)} bytes is not a whole number of "
                            f"{PSI_POINT_BYTES}-byte points")
    return count


def blind(points: bytes, scalar: bytes, *, first_index: int = 0) -> bytes:
    """X25519 of every point of the blob with `scalar`; `ProtocolError` on a small-order point.

    libsodium clamps the scalar to a multiple of 8 and the ladder uses u alone, so
    blind(blind(P, a), b) == blind(blind(P, b), a). Outputs are canonical, so equal points are
    equal bytes. An all-zero output means the input point had small order.
    """
    count = check_points(points)
    if len(scalar) != SCALAR_BYTES:
        raise ValueError(f"a PSI scalar is {SCALAR_BYTES} bytes, got {len(scalar)}")
    if count == 0:
        return b""
    out = ffi.new("unsigned char[]", count * PSI_POINT_BYTES)
    src = ffi.from_buffer(points)
    scalarmult = lib.crypto_scalarmult
    failed = 0
    for offset in range(0, count * PSI_POINT_BYTES, PSI_POINT_BYTES):
        failed |= scalarmult(out + offset, scalar, src + offset)
    if failed:  # libsodium returns -1 for an all-zero output: a small-order input point
        result = bytes(ffi.buffer(out))
        zero = bytes(PSI_POINT_BYTES)
        bad = next(i for i in range(count)
                   if result[i * PSI_POINT_BYTES:(i + 1) * PSI_POINT_BYTES] == zero)
        raise ProtocolError(f"point {first_index + bad} has small order (X25519 gave all "
                            "zeros); refusing it")
    return bytes(ffi.buffer(out))


def hash_and_blind(ids: Sequence[str], job_id: str, scalar: bytes) -> bytes:
    """`blind(hash_to_points(ids, job_id), scalar)`."""
    return blind(hash_to_points(ids, job_id), scalar)


def _blind_task(points: bytes, scalar: bytes, first_index: int) -> bytes:
    return blind(points, scalar, first_index=first_index)


def _warm_up() -> bytes:
    return b""


class PsiWorkers:
    """Spreads hashing and blinding over worker processes; serial below `serial_below` points.

    Processes, not threads: X25519 releases the GIL but hashing holds it (hash and blind on 2
    cores: 42 core-µs an id with processes, 47 with threads). The pool uses `spawn`, safe in
    gRPC's multi-threaded server, so the program's main module must be import-safe
    (`if __name__ == "__main__":`). It starts on first use; its methods are thread-safe.
    """

    def __init__(self, processes: int | None = None, *,
                 serial_below: int = 2 * TASK_POINTS, task_points: int = TASK_POINTS) -> None:
        self.processes = max(1, processes if processes is not None else (os.cpu_count() or 1))
        self.serial_below = serial_below
        self.task_points = task_points
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> PsiWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker processes (a later call starts them again)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def start(self) -> None:
        """Start the worker processes now rather than on the first large batch."""
        if self.processes > 1:
            pool = self._executor()
            self._collect([pool.submit(_warm_up) for _ in range(self.processes)])

    def _executor(self) -> Executor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.processes, mp_context=multiprocessing.get_context("spawn"))
            return self._pool

    def _parallel(self, count: int) -> bool:
        return self.processes > 1 and count >= self.serial_below

    def _collect(self, futures: Sequence[Future[bytes]]) -> bytes:
        try:
            return b"".join(future.result() for future in futures)
        except BrokenProcessPool as err:
            self.close()
            raise RuntimeError("a PSI worker process died (is the main module import-safe, "
                               "with `if __name__ == \"__main__\":`?); the pool will restart"
                               ) from err
        finally:
            for future in futures:
                future.cancel()

    def _submit_hash(self, ids: Sequence[str], job_id: str, scalar: bytes) -> list[Future[bytes]]:
        pool = self._executor()
        step = self.task_points
        return [pool.submit(hash_and_blind, list(ids[i:i + step]), job_id, scalar)
                for i in range(0, len(ids), step)]

    def hash_and_blind(self, ids: Sequence[str], job_id: str, scalar: bytes) -> bytes:
        """H(id)^scalar for every id, in order, as one blob."""
        if not self._parallel(len(ids)):
            return hash_and_blind(ids, job_id, scalar)
        return self._collect(self._submit_hash(ids, job_id, scalar))

    def hash_and_blind_chunks(self, ids: Sequence[str], job_id: str, scalar: bytes,
                              chunk_points: int) -> Iterator[bytes]:
        """H(id)^scalar in chunks of `chunk_points`; all the work is queued before this returns."""
        if not self._parallel(len(ids)):
            return (hash_and_blind(ids[i:i + chunk_points], job_id, scalar)
                    for i in range(0, len(ids), chunk_points))
        chunks = [self._submit_hash(ids[i:i + chunk_points], job_id, scalar)
                  for i in range(0, len(ids), chunk_points)]
        return self._drain(chunks)

    def _drain(self, chunks: list[list[Future[bytes]]]) -> Iterator[bytes]:
        try:
            for futures in chunks:
                yield self._collect(futures)
        finally:  # an abandoned stream must not keep the workers busy
            for futures in chunks:
                for future in futures:
                    future.cancel()

    def blind(self, points: bytes, scalar: bytes) -> bytes:
        """Every point of the blob to the power `scalar`, in order."""
        count = check_points(points)
        if not self._parallel(count):
            return blind(points, scalar)
        pool = self._executor()
        step = self.task_points * PSI_POINT_BYTES
        view = bytes(points)
        return self._collect([pool.submit(_blind_task, view[i:i + step], scalar,
                                          i // PSI_POINT_BYTES)
                              for i in range(0, len(view), step)])

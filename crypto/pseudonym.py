"""Pseudonyms the requesting bank cannot choose (DESIGN §4.5): an oblivious PRF keyed at the
coordinator, evaluated on blinded Curve25519 points only.

    P(id) = SHA-256("fedcredit/pseudonym/v1" ‖ X25519(k, H(id)))[:16]

H is the PSI hash to the curve (`crypto.psi_pool.hash_to_points`, domain "pseudonym/v1"), k the
network's pseudonym key: one secret X25519 scalar made by the coordinator in its state directory
(0600) and never sent anywhere. Whoever needs pseudonyms (the bank for the ids it asks about, a
feature node for the ids of its own table) picks a fresh blinding scalar r, sends X25519(r, H(id))
to the coordinator, gets X25519(k, ·) of it back and removes r with a scalar u ≡ clamp(r)⁻¹
(mod ℓ) that is itself a clamped X25519 scalar (`new_blinding` retries r until one exists, about
one draw in two). The coordinator sees only uniformly random subgroup points.

Why this construction and not a key the feature nodes share: a feature node must see the
pseudonym of every enterprise it is asked about (to look it up and charge the bank's daily budget
for it), and USCCs are public, so any pseudonym function a feature node can evaluate alone lets it
hash a candidate list and name every enterprise the bank asked about, customer or not. The key
must therefore sit with a party that never sees pseudonyms: the coordinator, which relays every
request but receives the pseudonym lists sealed end to end from the bank to each feature node
(`node.scoring.wire`), so it holds the key and nothing to apply it to. The bank does not control
the key either: the same enterprise has the same pseudonym whatever keys, identity or request
shape the bank uses, so budgets kept per (bank, pseudonym, day) at each feature node survive
restarts and key changes. A feature node learns pseudonyms for the ids it holds (it evaluates
them, blinded, to index its table) and sees the pseudonyms it is asked about; mapping any other
pseudonym to an id needs k. Limits, as in DESIGN §0: the coordinator colluding with a feature node
would break this (no two parties collude); a feature node that departs from the protocol and asks
for candidates' pseudonyms as if they were its own rows is bounded only by the coordinator's daily
cap on evaluations per node, as PSI alignment is bounded by the ids a party declares.
Pseudonyms are 16 bytes: a birthday collision needs ~2^64 enterprises.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from common.errors import ProtocolError
from common.files import atomic_write
from crypto.psi_pool import PSI_POINT_BYTES, PsiWorkers, blind, check_points, hash_to_points

PSEUDONYM_BYTES = 16
DOMAIN = b"fedcredit/pseudonym/v1"
HASH_DOMAIN = "pseudonym/v1"  # the PSI hash's per-job domain, fixed for pseudonyms
MAX_POINTS = 65536  # points in one evaluation call (2 MiB)
_ELL = 2**252 + 27742317777372353535851937790883648493  # order of the prime subgroup
_BASE = (9).to_bytes(32, "little")


def _clamped(scalar: bytes) -> int:
    """The integer X25519 multiplies by for `scalar` (RFC 7748 clamping)."""
    value = bytearray(scalar)
    value[0] &= 248
    value[31] &= 127
    value[31] |= 64
    return int.from_bytes(value, "little")


@dataclass(frozen=True)
class Blinding:
    """A one-use blinding scalar and the X25519 scalar that removes it on the subgroup."""

    scalar: bytes
    unblind: bytes


def new_blinding() -> Blinding:
    """A fresh r from `secrets` with u clamped and u·clamp(r) ≡ 1 (mod ℓ)."""
    eight_inverse = pow(8, -1, _ELL)
    while True:
        scalar = secrets.token_bytes(32)
        inverse = pow(_clamped(scalar), -1, _ELL)
        t = (inverse - 2**254) * eight_inverse % _ELL
        if t < 2**251:  # u = 2^254 + 8t is a clamped scalar: X25519 uses it as it is
            return Blinding(scalar=scalar, unblind=(2**254 + 8 * t).to_bytes(32, "little"))


def blind_ids(ids: list[str], blinding: Blinding) -> bytes:
    """X25519(r, H(id)) for each id: what goes to the coordinator."""
    return blind(hash_to_points(ids, HASH_DOMAIN), blinding.scalar)


def finish(evaluated: bytes, blinding: Blinding, count: int,
           workers: PsiWorkers | None = None) -> bytes:
    """The pseudonyms (16 bytes each, in order) from the coordinator's answer to `blind_ids`;
    the blinding removed over `workers` if given."""
    if check_points(evaluated, "evaluated pseudonym points") != count:
        raise ProtocolError(f"the coordinator evaluated {len(evaluated) // PSI_POINT_BYTES} "
                            f"pseudonym points for {count} ids")
    unblinded = (blind(evaluated, blinding.unblind) if workers is None
                 else workers.blind(evaluated, blinding.unblind))
    return pseudonyms_of_points(unblinded)


def pseudonyms_of_points(points: bytes) -> bytes:
    """16-byte pseudonyms of unblinded points X25519(k, H(id))."""
    sha256 = hashlib.sha256
    return b"".join(sha256(DOMAIN + points[i:i + PSI_POINT_BYTES]).digest()[:PSEUDONYM_BYTES]
                    for i in range(0, len(points), PSI_POINT_BYTES))


def split(blob: bytes) -> list[bytes]:
    """A blob of pseudonyms as a list; `ProtocolError` unless it is whole, non-empty ones."""
    if not blob or len(blob) % PSEUDONYM_BYTES:
        raise ProtocolError(f"a pseudonym list of {len(blob)} bytes is not whole "
                            f"{PSEUDONYM_BYTES}-byte pseudonyms")
    return [blob[i:i + PSEUDONYM_BYTES] for i in range(0, len(blob), PSEUDONYM_BYTES)]


class PseudonymKey:
    """The network's pseudonym key at the coordinator: evaluates blinded points, nothing else."""

    def __init__(self, scalar: bytes) -> None:
        if len(scalar) != 32:
            raise ProtocolError("a pseudonym key is a 32-byte X25519 scalar")
        self._scalar = scalar
        self.key_id = hashlib.sha256(DOMAIN + blind(_BASE, scalar)).hexdigest()[:16]
        """Names the key (a hash of its public point): a node's index says which key made it."""

    @classmethod
    def load_or_create(cls, path: Path) -> PseudonymKey:
        """The key kept at `path` (0600), made from `secrets` on first use."""
        if path.exists():
            return cls(path.read_bytes())
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, secrets.token_bytes(32), 0o600)
        return cls(path.read_bytes())

    def evaluate(self, points: bytes, workers: PsiWorkers | None = None) -> bytes:
        """X25519(k, ·) of every blinded point, over `workers` if given; refuses more than
        `MAX_POINTS` or a bad point."""
        count = check_points(points, "blinded pseudonym points")
        if not 0 < count <= MAX_POINTS:
            raise ProtocolError(f"a pseudonym evaluation takes 1 to {MAX_POINTS} points, "
                                f"not {count}")
        return blind(points, self._scalar) if workers is None else workers.blind(points,
                                                                                 self._scalar)

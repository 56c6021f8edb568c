"""The curious parties' own software for the scoring attacks (tests/attacks/test_scoring_*.py)."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from crypto.he import unpack_frames
from crypto.pseudonym import HASH_DOMAIN, PSEUDONYM_BYTES, pseudonyms_of_points
from crypto.psi_pool import blind, hash_to_points
from crypto.score_wire import ids_seal_context
from node.scoring.bank import BankScorer


class ChurningBank(BankScorer):
    """A bank whose own software no longer stops it repeating an enterprise in one request."""

    def _distinct(self, ids: Sequence[str]) -> None:
        return None


class IsolatingBank(BankScorer):
    """A bank that wants only `target` to match its ids: it seals the true pseudonyms to the
    target and another enterprise's to every other node (it signs the target's list). With the
    old protocol it chose per-node id keys instead; the set-up is now one signed blob that the
    coordinator gives every node alike, so the pseudonym lists are all it can still vary."""

    target = ""
    decoy = "91110000000000000X"

    def _seal_ids(self, pseudonyms: bytes, salt: bytes, number: int) -> dict[str, bytes]:
        if not self.target:
            return super()._seal_ids(pseudonyms, salt, number)
        count = len(pseudonyms) // PSEUDONYM_BYTES
        decoys = self.pseudonyms([f"{self.decoy[:-4]}{k:04d}" for k in range(count)])
        return {node: sealer.seal(salt + (pseudonyms if node == self.target else decoys),
                                  ids_seal_context(self.job, self.party, node, number))
                for node, sealer in self.sealers.items()}


def seen_pseudonyms(state_dir: Path, bank: str) -> set[bytes]:
    """Every pseudonym a feature node was asked about by `bank` (its budget book keeps them)."""
    with sqlite3.connect(state_dir / "scoring" / "budget.sqlite") as db:
        charged = [bytes(row[0]) for row in db.execute("SELECT hids FROM charges WHERE bank=?",
                                                         (bank,))]
        scored = {bytes(row[0]) for row in db.execute("SELECT hid FROM versions WHERE bank=?",
                                                      (bank,))}
    return scored | {blob[i:i + PSEUDONYM_BYTES] for blob in charged
                     for i in range(0, len(blob), PSEUDONYM_BYTES)}


def local_secrets(state_dir: Path) -> list[bytes]:
    """Every key-like secret a feature node holds: each small file whole, and every 32-byte
    window of its key files."""
    found: list[bytes] = []
    for path in sorted(state_dir.rglob("*")):
        if not path.is_file() or path.stat().st_size > 4 << 20:
            continue
        data = path.read_bytes()
        if 16 <= len(data) <= 64:
            found.append(data)
        if path.suffix == ".key" and len(data) <= 1 << 16:
            found += [data[i:i + 32] for i in range(0, max(len(data) - 31, 0), 8)]
    return found


def _guesses(key: bytes, candidates: list[str], points: bytes) -> list[bytes]:
    """What `key` could make of each candidate: a keyed hash, or the pseudonym function."""
    keyed = [hmac.new(key, c.encode(), hashlib.sha256).digest()[:PSEUDONYM_BYTES]
             for c in candidates]
    if len(key) != 32:
        return keyed
    raised = pseudonyms_of_points(blind(points, key))
    return keyed + [raised[i:i + PSEUDONYM_BYTES] for i in range(0, len(raised),
                                                                   PSEUDONYM_BYTES)]


def name_queried(state_dir: Path, bank: str, candidates: list[str]) -> set[str]:
    """The curious feature node: each candidate whose pseudonym, by any function it can
    evaluate with what it holds (keyed hashes and the pseudonym function under every secret it
    has, and the pseudonym function with no key at all), is one it was asked about."""
    seen = seen_pseudonyms(state_dir, bank)
    points = hash_to_points(candidates, HASH_DOMAIN)
    unkeyed = pseudonyms_of_points(points)
    named = {c for k, c in enumerate(candidates)
             if unkeyed[k * PSEUDONYM_BYTES:(k + 1) * PSEUDONYM_BYTES] in seen}
    for key in local_secrets(state_dir):
        guesses = _guesses(key, candidates, points)
        named |= {candidates[k % len(candidates)] for k, g in enumerate(guesses) if g in seen}
    return named


def own_named(state_dir: Path, bank: str, own_ids: list[str]) -> set[str]:
    """What the node may name (DESIGN §5): its own customers that were asked about, through
    the index of its own ids (the control that shows the harness reads what the node saw)."""
    seen = seen_pseudonyms(state_dir, bank)
    _, _, blob = unpack_frames((state_dir / "scoring" / "pseudonyms.bin").read_bytes(),
                               max_frames=3)
    return {ident for k, ident in enumerate(own_ids)
            if blob[k * PSEUDONYM_BYTES:(k + 1) * PSEUDONYM_BYTES] in seen}

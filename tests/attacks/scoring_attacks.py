"""The curious parties' own software for the scoring attacks (tests/attacks/test_scoring_*.py)."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from common.chunks import chunked
from crypto import seal
from node.scoring.bank import BankScorer
from common.limits import HASHED_ID_BYTES
from node.scoring.wire import ScoringSetup, hash_ids, setup_seal_context
from node.trust import verify_pinned
from proto.fedcredit.v1 import coordinator_pb2


class IsolatingBank(BankScorer):
    """A bank that gives every feature node but `target` a different id key, so only the
    target's ids match (the old protocol: the requester chose the id-hash key)."""

    target = ""

    def _setup(self) -> None:
        from crypto.he import scoring as score_he

        context, model_context = score_he.public_bytes(self.context), self.part.public_context
        assert self.tls is not None
        ca_pem = self.tls.read()[0]
        sealed = []
        for peer in self.feature_nodes:
            key = self.id_key if peer.party == self.target or not self.target \
                else secrets.token_bytes(32)
            payload = ScoringSetup(id_key=key, context=context,
                                   model_context=model_context).encode()
            public = verify_pinned(self.party, self.config.trust.peers, ca_pem, seal.PeerKey(
                party=peer.party, cert_pem=peer.cert_pem, sealing_pk=peer.sealing_public_key,
                signature=peer.signature), self.audit, job=self.job)
            sealer = seal.Sealer(self.sealing_key.private_key, public)
            sealed.append(coordinator_pb2.SealedSetup(node=peer.party, sealed=sealer.seal(
                payload, setup_seal_context(self.job, self.party, peer.party))))
        header = coordinator_pb2.ScoreSetupHeader(
            bank=self.party, model_id=self.model_id, model_job=self.job,
            context_bytes=len(context), model_context_bytes=len(model_context))

        def upload() -> Iterator[coordinator_pb2.ScoreSetupUpload]:
            yield coordinator_pb2.ScoreSetupUpload(header=header)
            yield from chunked(context, lambda c: coordinator_pb2.ScoreSetupUpload(context=c))
            yield from chunked(model_context,
                               lambda c: coordinator_pb2.ScoreSetupUpload(model_context=c))
            for one in sealed:
                yield coordinator_pb2.ScoreSetupUpload(sealed_setup=one)

        self.stub.ScoreSetup(upload(), timeout=120)

    def score(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.setup()  # the set-up for the current target
        return super().score(*args, **kwargs)


def seen_pseudonyms(state_dir: Path, bank: str) -> set[bytes]:
    """Every pseudonym a feature node was asked about by `bank` (its budget book keeps them)."""
    with sqlite3.connect(state_dir / "scoring" / "budget.sqlite") as db:
        return {bytes(row[0]) for row in db.execute("SELECT hid FROM queries WHERE bank=?",
                                                    (bank,))}


def local_secrets(state_dir: Path) -> list[bytes]:
    """Every key-like secret a feature node holds: small files whole, and the id key of any
    set-up a bank gave it."""
    found: list[bytes] = []
    for path in sorted(state_dir.rglob("*")):
        if not path.is_file() or path.stat().st_size > 4 << 20:
            continue
        data = path.read_bytes()
        if 16 <= len(data) <= 64:
            found.append(data)
        try:
            found.append(ScoringSetup.decode(data).id_key)
        except Exception:  # noqa: BLE001, S112 - not a set-up: try the next file
            continue
    return found


def name_queried(state_dir: Path, bank: str, candidates: list[str]) -> set[str]:
    """The curious feature node: each candidate whose pseudonym, by any function it can
    evaluate with what it holds, is one it was asked about."""
    seen = seen_pseudonyms(state_dir, bank)
    named: set[str] = set()
    for key in local_secrets(state_dir):
        hashed = hash_ids(key, candidates)
        named |= {c for k, c in enumerate(candidates)
                  if hashed[k * HASHED_ID_BYTES:(k + 1) * HASHED_ID_BYTES] in seen}
    return named

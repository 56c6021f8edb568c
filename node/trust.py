"""Pinned peers: a sealing key is used only for the certificate this node pinned for its party."""

from __future__ import annotations

from collections.abc import Mapping

from common.audit import AuditLog
from common.errors import TrustError
from crypto import seal
from crypto.enrol import certificate_fingerprint


def verify_pinned(me: str, pins: Mapping[str, str], ca_pem: bytes, peer: seal.PeerKey,
                  audit: AuditLog, *, job: str | None = None) -> bytes:
    """The peer's sealing key once its certificate is the one pinned for its party (`[trust]
    peers`), chains to our CA and signs the key. A refusal is audited (`trust.refused`, with
    both fingerprints) and raised as TrustError."""
    presented: str | None = None
    pinned = pins.get(peer.party)
    try:
        presented = certificate_fingerprint(peer.cert_pem)
        _check_pin(me, peer.party, presented, pinned)
        return seal.verify_peer_key(ca_pem, peer)
    except TrustError as err:
        audit.append("trust.refused", job=job, peer=peer.party,
                     details={"presented": presented, "pinned": pinned, "reason": str(err)})
        raise


def _check_pin(me: str, party: str, presented: str, pinned: str | None) -> None:
    if pinned is None:
        raise TrustError(
            f"{me} has no pinned certificate for {party} ([trust] peers has no entry "
            f"{party!r}); presented fingerprint {presented}. Check it with {party} out of band "
            "(`fedcredit pki fingerprint`) before pinning it.")
    if presented != pinned:
        raise TrustError(
            f"certificate presented for {party} has fingerprint {presented}, but {me} pins "
            f"{pinned} for {party} in [trust] peers: refusing its sealing key (a relay or the "
            "CA may have substituted it)")

"""Pinned peers: a sealing key is used only for the certificate this node pinned for its party."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.audit import AuditLog
from common.errors import TrustError
from common.names import check_party_name
from crypto import seal
from crypto.enrol import certificate_fingerprint, normalize_fingerprint


class TrustConfig(BaseModel):
    """A node's `[trust]` table: party name -> SHA-256 fingerprint of its certificate, exchanged
    out of band like SSH known_hosts.

    A peer's sealing key is accepted only when its certificate is pinned here; a party without a
    pin is refused (the CA alone is not enough: whoever runs it could issue a second certificate
    in a party's name).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    peers: dict[str, str] = Field(default_factory=dict)

    @field_validator("peers")
    @classmethod
    def _pins(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            check_party_name(name)  # an InvalidPartyName is a ValueError: pydantic names the key
        return {name: normalize_fingerprint(pin) for name, pin in value.items()}


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

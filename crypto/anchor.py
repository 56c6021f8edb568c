"""Signed audit heads ("anchors"): signing with the certificate key, checking, JSON lines."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from common.errors import AuditError, TrustError
from crypto.pki import load_certificate, load_private_key, verify_peer_certificate

ANCHOR_DOMAIN = b"fedcredit/audit-anchor/v1\x00"


@dataclass(frozen=True)
class Anchor:
    """`party`'s audit log had entry `seq` with hash `entry_hash` at `time_unix`, signed."""

    party: str
    seq: int
    entry_hash: str
    time_unix: int
    signature: bytes
    cert_pem: bytes

    def to_json(self) -> str:
        return json.dumps({"party": self.party, "seq": self.seq, "entry_hash": self.entry_hash,
                           "time_unix": self.time_unix,
                           "signature": base64.b64encode(self.signature).decode(),
                           "cert_pem": self.cert_pem.decode()}, sort_keys=True)

    @classmethod
    def from_json(cls, line: str, where: str) -> Anchor:
        try:
            raw: dict[str, Any] = json.loads(line)
            return cls(party=str(raw["party"]), seq=int(raw["seq"]),
                       entry_hash=str(raw["entry_hash"]), time_unix=int(raw["time_unix"]),
                       signature=base64.b64decode(raw["signature"], validate=True),
                       cert_pem=str(raw["cert_pem"]).encode())
        except (ValueError, KeyError, TypeError) as err:
            raise AuditError(f"{where}: not an audit anchor ({err})") from err


def anchor_message(party: str, seq: int, entry_hash: str, time_unix: int) -> bytes:
    """The domain-separated bytes a party signs to vouch for its audit head."""
    name, digest = party.encode(), entry_hash.encode()
    return (ANCHOR_DOMAIN + struct.pack(">H", len(name)) + name + struct.pack(">QQ", seq, time_unix)
            + struct.pack(">H", len(digest)) + digest)


def sign_anchor(key_pem: bytes, cert_pem: bytes, party: str, seq: int, entry_hash: str,
                time_unix: int | None = None) -> Anchor:
    """Sign (seq, entry_hash) for `party` with its certificate key (ECDSA P-256, SHA-256)."""
    when = int(time.time()) if time_unix is None else time_unix
    key = load_private_key(key_pem, source=f"certificate key of {party}")
    signature = key.sign(anchor_message(party, seq, entry_hash, when), ec.ECDSA(hashes.SHA256()))
    return Anchor(party=party, seq=seq, entry_hash=entry_hash, time_unix=when,
                  signature=signature, cert_pem=cert_pem)


def verify_anchor(ca_pem: bytes, anchor: Anchor, party: str | None = None) -> None:
    """Raise TrustError unless the anchor is signed by a certificate our CA issued to its party
    (and that party is `party`, when given)."""
    if party is not None and anchor.party != party:
        raise TrustError(f"anchor of {anchor.party!r} where one of {party!r} was expected")
    verify_peer_certificate(ca_pem, anchor.cert_pem, anchor.party)
    public = load_certificate(anchor.cert_pem, source=f"certificate of {anchor.party}"
                              ).public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise TrustError(f"certificate of {anchor.party} does not hold an ECDSA key")
    try:
        public.verify(anchor.signature, anchor_message(anchor.party, anchor.seq,
                                                       anchor.entry_hash, anchor.time_unix),
                      ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as err:
        raise TrustError(f"anchor of {anchor.party} at entry {anchor.seq} is not signed by "
                         f"{anchor.party}'s certificate key") from err


def read_anchors(path: Path) -> list[Anchor]:
    """The anchors in a JSON-lines file (what `fedcredit audit anchors` and a node write)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise AuditError(f"cannot read anchors file {path}: {err.strerror}") from err
    return [Anchor.from_json(line, f"{path} line {n}") for n, line in enumerate(lines, start=1)
            if line.strip()]


def write_anchors(path: Path, anchors: Iterable[Anchor]) -> None:
    """Write anchors as JSON lines (replacing the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(a.to_json() + "\n" for a in anchors), encoding="utf-8")


def append_anchor(path: Path, anchor: Anchor) -> None:
    """Add one anchor to a JSON-lines file (a node's record of the coordinator's heads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(anchor.to_json() + "\n")

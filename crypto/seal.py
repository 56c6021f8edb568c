"""End-to-end sealing between nodes: X25519 boxes the coordinator relays but cannot read."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey

from common.errors import ProtocolError, TrustError
from crypto.pki import load_certificate, load_private_key, verify_peer_certificate

log = logging.getLogger(__name__)

SEALING_KEY_DOMAIN = b"fedcredit/sealing-key/v1"
_CONTEXT_DOMAIN = b"fedcredit/seal-context/v1"
KEY_BYTES = PublicKey.SIZE  # 32
_DIGEST_BYTES = 32
# nonce + MAC added by the box, plus the context digest inside it
OVERHEAD = Box.NONCE_SIZE + 16 + _DIGEST_BYTES


@dataclass(frozen=True)
class SealingKey:
    """A node's X25519 sealing key pair, kept in its state directory."""

    private_key: PrivateKey

    @property
    def public_bytes(self) -> bytes:
        return bytes(self.private_key.public_key)

    @classmethod
    def generate(cls) -> SealingKey:
        return cls(PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: Path) -> SealingKey:
        """Load the 32-byte key at `path`, or create it there (mode 0600) if it does not exist.

        Creation is atomic: concurrent callers all end up with the same key, and a reader never
        sees a half-written file.
        """
        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fresh = PrivateKey.generate()
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(bytes(fresh))
                    handle.flush()
                    os.fsync(handle.fileno())
                try:
                    os.link(tmp, path)  # fails if another process created it first
                    return cls(fresh)
                except FileExistsError:
                    pass
            finally:
                Path(tmp).unlink(missing_ok=True)
        try:
            raw = path.read_bytes()
            mode = path.stat().st_mode
        except OSError as err:
            raise TrustError(f"cannot read sealing key {path}: {err.strerror}") from err
        if len(raw) != PrivateKey.SIZE:
            raise TrustError(f"sealing key {path} holds {len(raw)} bytes, expected "
                             f"{PrivateKey.SIZE}; delete it to make a new one")
        if mode & 0o077:
            log.warning("sealing key %s is readable by other users; run chmod 600 on it", path)
        return cls(PrivateKey(raw))


@dataclass(frozen=True)
class PeerKey:
    """A node's sealing public key as published through the coordinator, with its proof."""

    party: str
    cert_pem: bytes
    sealing_pk: bytes
    signature: bytes


def sealing_key_message(party: str, sealing_pk: bytes) -> bytes:
    """The domain-separated bytes a node signs to vouch for its sealing public key."""
    if len(sealing_pk) != KEY_BYTES:
        raise TrustError(f"sealing key of {party} is {len(sealing_pk)} bytes, expected {KEY_BYTES}")
    name = party.encode("utf-8")
    return SEALING_KEY_DOMAIN + struct.pack(">H", len(name)) + name + sealing_pk


def sign_sealing_key(identity_key_pem: bytes, party: str, sealing_pk: bytes) -> bytes:
    """Sign `sealing_pk` for `party` with the party's certificate key (ECDSA P-256, SHA-256)."""
    key = load_private_key(identity_key_pem, source=f"certificate key of {party}")
    return key.sign(sealing_key_message(party, sealing_pk), ec.ECDSA(hashes.SHA256()))


def verify_peer_key(ca_pem: bytes, peer: PeerKey) -> bytes:
    """Return the peer's sealing public key once its certificate and signature check out."""
    verify_peer_certificate(ca_pem, peer.cert_pem, peer.party)
    public = load_certificate(peer.cert_pem, source=f"certificate of {peer.party}").public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise TrustError(f"certificate of {peer.party} does not hold an ECDSA key")
    try:
        public.verify(peer.signature, sealing_key_message(peer.party, peer.sealing_pk),
                      ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as err:
        raise TrustError(
            f"sealing key offered for {peer.party} is not signed by {peer.party}'s certificate: "
            "the relay may have swapped it"
        ) from err
    return peer.sealing_pk


class Sealer:
    """Seal and open messages between this node and one peer, bound to a context.

    The context (e.g. job, step, chunk index, sender, recipient) is hashed into the sealed
    payload together with both public keys in sending order, so a relay can neither move a
    chunk to another job or step nor reflect it back to its sender.
    """

    def __init__(self, own_private_key: PrivateKey, peer_public_key: bytes | PublicKey) -> None:
        try:
            peer = (peer_public_key if isinstance(peer_public_key, PublicKey)
                    else PublicKey(bytes(peer_public_key)))
            self._box = Box(own_private_key, peer)
        except CryptoError as err:  # wrong length, or a low-order point (all-zero shared secret)
            raise TrustError(f"unusable peer sealing key: {err}") from err
        self._own = bytes(own_private_key.public_key)
        self._peer = bytes(peer)

    @property
    def peer_public_key(self) -> bytes:
        return self._peer

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        """Encrypt and authenticate `plaintext` for the peer (random nonce), bound to `context`."""
        digest = _context_digest(context, sender=self._own, recipient=self._peer)
        return bytes(self._box.encrypt(digest + plaintext))

    def open(self, ciphertext: bytes, context: bytes) -> bytes:
        """Authenticate and decrypt a payload the peer sealed for us under the same `context`."""
        if len(ciphertext) < OVERHEAD:
            raise ProtocolError(f"sealed payload is {len(ciphertext)} bytes, shorter than the "
                                f"{OVERHEAD}-byte minimum: truncated")
        try:
            message = self._box.decrypt(ciphertext)
        except CryptoError as err:
            raise ProtocolError(
                "sealed payload failed authentication: tampered, truncated, or sealed by "
                "another sender or for another recipient"
            ) from err
        expected = _context_digest(context, sender=self._peer, recipient=self._own)
        if not hmac.compare_digest(message[:_DIGEST_BYTES], expected):
            raise ProtocolError(
                "sealed payload was sealed for another context (job, step, chunk or direction): "
                "refusing a replayed or misrouted chunk"
            )
        return message[_DIGEST_BYTES:]


def _context_digest(context: bytes, *, sender: bytes, recipient: bytes) -> bytes:
    if not isinstance(context, bytes | bytearray | memoryview):
        raise TypeError("seal context must be bytes")
    digest = hashlib.sha256(_CONTEXT_DOMAIN)
    digest.update(sender)
    digest.update(recipient)
    digest.update(struct.pack(">Q", len(context)))
    digest.update(context)
    return digest.digest()

"""Signed consent records: what an enterprise agreed to, signed with the bank's certificate key.

A record names the pseudonyms it covers (SHA-256 over a per-request salt and the request's
pseudonyms, in order: one enterprise's pseudonym for a single decision; the salt travels sealed
to the feature nodes with the pseudonyms, so the coordinator cannot test candidates against the
digest), the bank, the model job, the digest of the bank's signed set-up (every feature node
answers under that one set-up), the purpose, the expiry and the loan system's reference. The
bank signs its canonical JSON (ECDSA P-256, SHA-256, domain separated) with its TLS certificate
key; the coordinator checks it with the bank's registered certificate before relaying, and each
feature node with the bank's certificate it has pinned, and also that the digest is that of the
pseudonyms it was sealed: since every node checks the same signed digest, every node was given
the same pseudonyms. `sign_blob` / `verify_blob` sign other bank statements (the set-up) the
same way. Parsed with pydantic: a record is decoded from the wire.
"""

from __future__ import annotations

import hashlib
import json
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import TrustError
from crypto.pki import load_certificate, load_private_key

CONSENT_DOMAIN = b"fedcredit/consent/v2\x00"
MAX_RECORD_BYTES = 2048


class ConsentRefused(TrustError):
    """A consent record that is missing, malformed, expired, forged or for something else."""


class ConsentRecord(BaseModel):
    """One consent: who may ask (bank), about whom (pseudonyms), why, until when, and the
    reference the bank's loan system keeps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: int = Field(default=2, ge=2, le=2)
    pseudonyms: str = Field(pattern=r"^[0-9a-f]{64}$")
    bank: str = Field(min_length=1, max_length=64)
    model_job: str = Field(min_length=1, max_length=128)
    setup: str = Field(pattern=r"^[0-9a-f]{64}$")
    purpose: str = Field(min_length=1, max_length=128)
    reference: str = Field(min_length=1, max_length=128)
    expires_unix: int = Field(gt=0)

    def encode(self) -> bytes:
        return json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> ConsentRecord:
        if len(data) > MAX_RECORD_BYTES:
            raise ConsentRefused(f"a consent record of {len(data)} bytes is over the limit")
        try:
            return cls.model_validate_json(data)
        except ValidationError as err:
            raise ConsentRefused(f"malformed consent record: {err.error_count()} problem(s), "
                                 f"first at {'.'.join(map(str, err.errors()[0]['loc']))}"
                                 ) from err


SALT_BYTES = 16


def pseudonyms_digest(salt: bytes, pseudonyms: bytes) -> str:
    """What a record covers: SHA-256 over the request's salt and pseudonyms, in order."""
    if len(salt) != SALT_BYTES:
        raise ConsentRefused(f"a pseudonym salt is {SALT_BYTES} bytes, not {len(salt)}")
    return hashlib.sha256(b"fedcredit/consent-pseudonyms/v2\x00" + salt + pseudonyms).hexdigest()


def sign_blob(key_pem: bytes, domain: bytes, data: bytes, *, signer: str) -> bytes:
    """`signer`'s ECDSA P-256 signature with its certificate key over `domain` ‖ `data`."""
    key = load_private_key(key_pem, source=f"certificate key of {signer}")
    return key.sign(domain + data, ec.ECDSA(hashes.SHA256()))


def verify_blob(cert_pem: bytes, domain: bytes, data: bytes, signature: bytes, *,
                signer: str, what: str) -> None:
    """ConsentRefused unless `signature` is `signer`'s certificate key's over `domain` ‖ `data`."""
    if not signature:
        raise ConsentRefused(f"the {what} is not signed")
    public = load_certificate(cert_pem, source=f"certificate of {signer}").public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ConsentRefused(f"certificate of {signer} does not hold an ECDSA key")
    try:
        public.verify(signature, domain + data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as err:
        raise ConsentRefused(f"the {what} is not signed by {signer}'s certificate key") from err


def sign_consent(key_pem: bytes, record: ConsentRecord) -> bytes:
    """The bank's signature over the record with its certificate key."""
    return sign_blob(key_pem, CONSENT_DOMAIN, record.encode(), signer=record.bank)


def verify_consent(cert_pem: bytes, data: bytes, signature: bytes, *, bank: str,
                   model_job: str, purpose: str, reference: str, setup: str,
                   pseudonyms: tuple[bytes, bytes] | None, now: float | None = None,
                   ) -> ConsentRecord:
    """The record, once signed by `cert_pem`'s key (the bank's certificate), unexpired and
    about exactly this request; ConsentRefused saying why otherwise. `pseudonyms` is the
    (salt, pseudonyms) a feature node was sealed; None at the coordinator, which has neither."""
    if not data or not signature:
        raise ConsentRefused("the consent is not a signed record")
    record = ConsentRecord.decode(data)
    verify_blob(cert_pem, CONSENT_DOMAIN, data, signature, signer=bank, what="consent record")
    expected = {"bank": bank, "model_job": model_job, "purpose": purpose,
                "reference": reference, "setup": setup}
    if pseudonyms is not None:
        expected["pseudonyms"] = pseudonyms_digest(*pseudonyms)
    for name, value in expected.items():
        if getattr(record, name) != value:
            raise ConsentRefused(f"the consent record's {name} is not this request's")
    if record.expires_unix <= (time.time() if now is None else now):
        raise ConsentRefused("the consent has expired")
    return record

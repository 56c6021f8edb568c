"""Signed consent records: what an enterprise agreed to, signed with the bank's certificate key.

A record names the pseudonyms it covers (SHA-256 over the request's keyed-hash ids: one
enterprise's pseudonym for a single decision), the bank, the model job, the purpose, the expiry
and the loan system's reference. The bank signs its canonical JSON (ECDSA P-256, SHA-256, domain
separated) with its TLS certificate key; a feature node verifies it with the bank's certificate,
which it has pinned. Parsed with pydantic: a record is decoded from the wire.
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

CONSENT_DOMAIN = b"fedcredit/consent/v1\x00"
MAX_RECORD_BYTES = 2048


class ConsentRefused(TrustError):
    """A consent record that is missing, malformed, expired, forged or for something else."""


class ConsentRecord(BaseModel):
    """One consent: who may ask (bank), about whom (pseudonyms), why, until when, and the
    reference the bank's loan system keeps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: int = Field(default=1, ge=1, le=1)
    pseudonyms: str = Field(pattern=r"^[0-9a-f]{64}$")
    bank: str = Field(min_length=1, max_length=64)
    model_job: str = Field(min_length=1, max_length=128)
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


def pseudonyms_digest(hashed_ids: bytes) -> str:
    """What a record covers: SHA-256 over the request's keyed-hash ids, in order."""
    return hashlib.sha256(b"fedcredit/consent-pseudonyms/v1\x00" + hashed_ids).hexdigest()


def sign_consent(key_pem: bytes, record: ConsentRecord) -> bytes:
    """The bank's signature over the record with its certificate key."""
    key = load_private_key(key_pem, source=f"certificate key of {record.bank}")
    return key.sign(CONSENT_DOMAIN + record.encode(), ec.ECDSA(hashes.SHA256()))


def verify_consent(cert_pem: bytes, data: bytes, signature: bytes, *, bank: str,
                   model_job: str, purpose: str, reference: str, hashed_ids: bytes,
                   now: float | None = None) -> ConsentRecord:
    """The record, once signed by `cert_pem`'s key (the bank's pinned certificate), unexpired
    and about exactly this request; ConsentRefused saying why otherwise."""
    if not data or not signature:
        raise ConsentRefused("the consent is not a signed record")
    record = ConsentRecord.decode(data)
    public = load_certificate(cert_pem, source=f"certificate of {bank}").public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ConsentRefused(f"certificate of {bank} does not hold an ECDSA key")
    try:
        public.verify(signature, CONSENT_DOMAIN + data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as err:
        raise ConsentRefused(f"the consent record is not signed by {bank}'s certificate key"
                             ) from err
    expected = {"bank": bank, "model_job": model_job, "purpose": purpose,
                "reference": reference, "pseudonyms": pseudonyms_digest(hashed_ids)}
    for name, value in expected.items():
        if getattr(record, name) != value:
            raise ConsentRefused(f"the consent record's {name} is not this request's")
    if record.expires_unix <= (time.time() if now is None else now):
        raise ConsentRefused("the consent has expired")
    return record

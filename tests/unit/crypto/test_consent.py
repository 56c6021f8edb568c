"""Signed consent records: a round trip, and every way a record is refused."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from crypto.consent import (
    ConsentRecord,
    ConsentRefused,
    pseudonyms_digest,
    sign_consent,
    verify_consent,
)

IDS = b"\x01" * 16
SALT = b"\x05" * 16
SETUP = "ab" * 32


def _key_and_cert() -> tuple[bytes, bytes]:
    import datetime as dt

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bank")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return pem, cert.public_bytes(serialization.Encoding.PEM)


def _record(**change: object) -> ConsentRecord:
    fields = {"pseudonyms": pseudonyms_digest(SALT, IDS), "bank": "bank", "model_job": "tr",
              "setup": SETUP,
              "purpose": "credit", "reference": "R-1", "expires_unix": 2_000_000_000}
    return ConsentRecord.model_validate({**fields, **change})


def _verify(cert: bytes, data: bytes, signature: bytes, now: float = 1_900_000_000,
            pseudonyms: tuple[bytes, bytes] | None = (SALT, IDS)) -> None:
    verify_consent(cert, data, signature, bank="bank", model_job="tr", purpose="credit",
                   reference="R-1", setup=SETUP, pseudonyms=pseudonyms, now=now)


def test_a_signed_record_verifies() -> None:
    key, cert = _key_and_cert()
    record = _record()
    _verify(cert, record.encode(), sign_consent(key, record))


@pytest.mark.parametrize(("change", "why"), [
    ({"reference": "R-2"}, "reference"), ({"purpose": "marketing"}, "purpose"),
    ({"pseudonyms": pseudonyms_digest(SALT, b"\x02" * 16)}, "pseudonyms"),
    ({"pseudonyms": pseudonyms_digest(b"\x06" * 16, IDS)}, "pseudonyms"),
    ({"setup": "cd" * 32}, "setup"),
    ({"expires_unix": 1_800_000_000}, "expired"),
])
def test_a_record_for_something_else_is_refused(change: dict[str, object], why: str) -> None:
    key, cert = _key_and_cert()
    record = _record(**change)
    with pytest.raises(ConsentRefused, match=why):
        _verify(cert, record.encode(), sign_consent(key, record))


def test_unsigned_tampered_and_forged_records_are_refused() -> None:
    key, cert = _key_and_cert()
    other, _ = _key_and_cert()
    record = _record()
    with pytest.raises(ConsentRefused, match="not a signed record"):
        _verify(cert, record.encode(), b"")
    tampered = record.encode().replace(b"2000000000", b"2100000000")
    with pytest.raises(ConsentRefused, match="not signed"):
        _verify(cert, tampered, sign_consent(key, record))
    with pytest.raises(ConsentRefused, match="not signed"):
        _verify(cert, record.encode(), sign_consent(other, record))
    with pytest.raises(ConsentRefused, match="malformed"):
        _verify(cert, b'{"v": 1}', b"x")


def test_the_coordinator_checks_all_but_the_pseudonyms_it_cannot_see() -> None:
    key, cert = _key_and_cert()
    record = _record(pseudonyms=pseudonyms_digest(SALT, b"\x09" * 16))
    _verify(cert, record.encode(), sign_consent(key, record), pseudonyms=None)
    expired = _record(expires_unix=1_800_000_000)
    with pytest.raises(ConsentRefused, match="expired"):
        _verify(cert, expired.encode(), sign_consent(key, expired), pseudonyms=None)

"""Tests for each party's own keys: requests, the CA signing them, fingerprints."""

from __future__ import annotations

import hashlib
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from common.errors import DataValidationError, TrustError
from crypto.enrol import (
    certificate_fingerprint,
    make_request,
    normalize_fingerprint,
    sign_request,
)
from crypto.pki import create_ca, init_pki, load_identity, verify_peer_certificate
from crypto.seal import PeerKey, SealingKey, sign_sealing_key, verify_peer_key


@pytest.fixture()
def ca(tmp_path: Path) -> Path:
    create_ca(tmp_path / "ca")
    return tmp_path / "ca"


def _csr(name: str, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
         sans: list[x509.GeneralName] | None = None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_ca_init_writes_key_owner_only_and_refuses_to_replace(ca: Path) -> None:
    assert stat.S_IMODE((ca / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((ca / "ca.crt").stat().st_mode) == 0o644
    with pytest.raises(DataValidationError, match="already holds a CA"):
        create_ca(ca)


def test_request_writes_owner_only_key_and_a_csr_naming_the_party(tmp_path: Path) -> None:
    files = make_request("core", tmp_path / "core", ["core.example", "10.0.0.7"])

    csr = x509.load_pem_x509_csr(files.csr.read_bytes())
    assert sorted(p.name for p in (tmp_path / "core").iterdir()) == ["core.csr", "core.key"]
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "core"
    with pytest.raises(DataValidationError, match="refusing to replace core's private key"):
        make_request("core", tmp_path / "core")


@pytest.mark.parametrize("name", ["Core", "core bank", "-core", "x" * 64, ""])
def test_request_refuses_a_bad_party_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(DataValidationError, match="invalid party name"):
        make_request(name, tmp_path)
    assert not list(tmp_path.iterdir())


def test_signed_certificate_loads_as_an_identity_with_the_init_profile(
        tmp_path: Path, ca: Path) -> None:
    files = make_request("core", tmp_path / "core", ["core.example", "10.0.0.7"])

    signed = sign_request(ca, files.csr.read_bytes())
    (tmp_path / "core" / "core.crt").write_bytes(signed.cert_pem)
    (tmp_path / "core" / "ca.crt").write_bytes((ca / "ca.crt").read_bytes())

    identity = load_identity(tmp_path / "core", "core")  # cert, key and CA belong together
    verify_peer_certificate((ca / "ca.crt").read_bytes(), signed.cert_pem, "core")
    cert = x509.load_pem_x509_certificate(signed.cert_pem)
    demo = x509.load_pem_x509_certificate(
        init_pki(tmp_path / "demo", ["core"]).parties["core"][0].read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert identity.name == signed.party == "core"
    assert sans.get_values_for_type(x509.DNSName) == ["core", "core.example"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]
    for kind in (x509.BasicConstraints, x509.KeyUsage, x509.ExtendedKeyUsage):
        assert (cert.extensions.get_extension_for_class(kind).value
                == demo.extensions.get_extension_for_class(kind).value)


def test_sign_refuses_a_request_whose_signature_does_not_verify(ca: Path) -> None:
    der = x509.load_pem_x509_csr(_csr("core")).public_bytes(serialization.Encoding.DER)
    tampered = x509.load_der_x509_csr(der.replace(b"core", b"cora", 1))

    with pytest.raises(TrustError, match="signature does not verify"):
        sign_request(ca, tampered.public_bytes(serialization.Encoding.PEM))


@pytest.mark.parametrize("name", ["Core", "fedcredit network CA", "a.b"])
def test_sign_refuses_a_common_name_that_is_not_a_party_name(ca: Path, name: str) -> None:
    with pytest.raises(TrustError, match="common name: invalid party name"):
        sign_request(ca, _csr(name))


def test_sign_refuses_another_name_key_type_or_a_one_label_host(ca: Path) -> None:
    with pytest.raises(TrustError, match="names 'core', expected 'bank'"):
        sign_request(ca, _csr("core"), expected_party="bank")
    with pytest.raises(TrustError, match="ECDSA P-256"):
        sign_request(ca, _csr("core", rsa.generate_private_key(65537, 2048)))
    with pytest.raises(TrustError, match="could be another party's name"):
        sign_request(ca, _csr("core", sans=[x509.DNSName("bank")]))
    with pytest.raises(TrustError, match="ca.crt does not exist"):
        sign_request(ca / "missing", _csr("core"))


def test_fingerprint_is_sha256_of_der_in_one_form(ca: Path) -> None:
    pem = (ca / "ca.crt").read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)

    value = certificate_fingerprint(pem)

    assert value.replace(":", "") == hashlib.sha256(der).hexdigest().upper()
    assert len(value) == 95 and value.count(":") == 31
    assert normalize_fingerprint(value.lower().replace(":", "")) == value
    assert normalize_fingerprint("sha256:" + value) == value
    for bad in ("", value[:-3], value + ":00", value.replace(value[0], "G", 1)):
        with pytest.raises(ValueError, match="SHA-256 certificate fingerprint"):
            normalize_fingerprint(bad)


def test_the_ca_alone_accepts_a_forged_sealing_key_the_pin_tells_apart(
        tmp_path: Path, ca: Path) -> None:
    """Why pins: whoever holds the CA key issues a second certificate in a party's name."""
    real = make_request("core", tmp_path / "core")
    real_cert = sign_request(ca, real.csr.read_bytes())
    forged_key = ec.generate_private_key(ec.SECP256R1())
    forged_cert = sign_request(ca, _csr("core", forged_key))
    key_pem = forged_key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
    sealing = SealingKey.generate().public_bytes
    forged = PeerKey(party="core", cert_pem=forged_cert.cert_pem, sealing_pk=sealing,
                     signature=sign_sealing_key(key_pem, "core", sealing))

    assert verify_peer_key((ca / "ca.crt").read_bytes(), forged) == sealing
    assert certificate_fingerprint(forged.cert_pem) != real_cert.fingerprint

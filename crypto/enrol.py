"""Each party's own keys: certificate requests, the CA signing them, fingerprints to pin."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from common.errors import DataValidationError, TrustError
from common.names import check_party_name
from crypto.pki import (
    CA_CERT,
    CA_KEY,
    host_names,
    load_certificate,
    load_private_key,
    party_certificate,
    private_key_pem,
    write_private,
    write_public,
)

FINGERPRINT_BYTES = 32  # SHA-256
_HEX_PAIRS = re.compile(r"^[0-9A-Fa-f]{2}(:?[0-9A-Fa-f]{2})*$")


@dataclass(frozen=True)
class RequestFiles:
    """What `make_request` wrote on the party's host: its private key and the request to send."""

    party: str
    key: Path
    csr: Path


@dataclass(frozen=True)
class Signed:
    """A certificate the CA issued: the party it names, its PEM and its fingerprint."""

    party: str
    cert_pem: bytes
    fingerprint: str


def make_request(party: str, out_dir: Path, hosts: Sequence[str] = (), *,
                 force: bool = False) -> RequestFiles:
    """On the party's own host: a fresh P-256 key (`<party>.key`, 0600) and a signed CSR
    (`<party>.csr`) whose CN is the party name. Refuses to replace an existing key."""
    check_party_name(party)
    out_dir = Path(out_dir)
    key_path, csr_path = out_dir / f"{party}.key", out_dir / f"{party}.csr"
    if key_path.exists() and not force:
        raise DataValidationError(
            f"{key_path} already exists; refusing to replace {party}'s private key (its "
            "certificate would stop working). Pass --force to make a new one.")
    sans = host_names(hosts)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())  # OS randomness
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party),
                   x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedcredit")]))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    write_private(key_path, private_key_pem(key))
    write_public(csr_path, csr.public_bytes(serialization.Encoding.PEM))
    return RequestFiles(party=party, key=key_path, csr=csr_path)


def sign_request(ca_dir: Path, csr_pem: bytes, *, days: int = 365,
                 expected_party: str | None = None) -> Signed:
    """At the CA: check a request (its own signature, one valid party name as CN, a P-256 key,
    host names only) and issue the party certificate profile `init_pki` uses."""
    ca_dir = Path(ca_dir)
    csr = _load_csr(csr_pem)
    if not csr.is_signature_valid:
        raise TrustError("the certificate request's signature does not verify with its own key: "
                         "it was altered or not made by the holder of the key")
    party = _request_party(csr)
    if expected_party is not None and party != expected_party:
        raise TrustError(f"the certificate request names {party!r}, expected {expected_party!r}")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve,
                                                                           ec.SECP256R1):
        raise TrustError(f"the certificate request of {party} does not hold an ECDSA P-256 key")
    ca_cert = load_certificate(_read(ca_dir / CA_CERT, "CA certificate"),
                               source=str(ca_dir / CA_CERT))
    ca_key = load_private_key(_read(ca_dir / CA_KEY, "CA key"), source=str(ca_dir / CA_KEY))
    if ca_key.public_key().public_numbers() != _ca_public(ca_cert).public_numbers():
        raise TrustError(f"{ca_dir / CA_KEY} is not the key of {ca_dir / CA_CERT}")
    cert = party_certificate(party, public, _requested_sans(csr, party), ca_key, ca_cert, days)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    return Signed(party=party, cert_pem=pem, fingerprint=certificate_fingerprint(pem))


def write_certificate(path: Path, cert_pem: bytes) -> None:
    """Write an issued certificate (public, 0644)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_public(path, cert_pem)


def certificate_fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the DER certificate as uppercase hex pairs joined by colons (what
    `openssl x509 -noout -fingerprint -sha256` prints after `=`)."""
    der = load_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return _pairs(hashlib.sha256(der).hexdigest())


def normalize_fingerprint(text: str) -> str:
    """A pinned fingerprint in the one form we print; colons and case are optional on input."""
    value = text.strip()
    if value.lower().startswith("sha256:"):
        value = value[len("sha256:"):]
    digits = value.replace(":", "")
    if not _HEX_PAIRS.fullmatch(value) or len(digits) != 2 * FINGERPRINT_BYTES:
        raise ValueError(f"expected a SHA-256 certificate fingerprint (64 hex digits, colons "
                         f"optional; `fedcredit pki fingerprint CERT` prints it), got {text!r}")
    return _pairs(digits)


# helpers ------------------------------------------------------------------------------------
def _pairs(hex_digits: str) -> str:
    upper = hex_digits.upper()
    return ":".join(upper[i:i + 2] for i in range(0, len(upper), 2))


def _load_csr(pem: bytes) -> x509.CertificateSigningRequest:
    try:
        return x509.load_pem_x509_csr(pem)
    except (ValueError, TypeError) as err:
        raise TrustError(f"not a PEM certificate signing request: {err}") from err


def _request_party(csr: x509.CertificateSigningRequest) -> str:
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise TrustError(f"the certificate request has {len(names)} common names, expected one "
                         "(the party name)")
    value = names[0].value
    name = value if isinstance(value, str) else value.decode()
    try:
        return check_party_name(name)
    except DataValidationError as err:
        raise TrustError(f"the certificate request's common name: {err}") from err


def _requested_sans(csr: x509.CertificateSigningRequest, party: str) -> list[x509.GeneralName]:
    try:
        requested = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out: list[x509.GeneralName] = []
    for general in requested:
        if not isinstance(general, x509.DNSName | x509.IPAddress):
            raise TrustError(f"the certificate request of {party} asks for {general!r}; only "
                             "host names and IP addresses are issued")
        if isinstance(general, x509.DNSName) and "." not in general.value and \
                general.value.lower() not in (party, "localhost"):
            # Channels check the peer's name against a DNS name: a one-label name could be
            # another party's, so only the party's own (added anyway) and localhost are issued.
            raise TrustError(f"the certificate request of {party} asks for the host name "
                             f"{general.value!r}, which could be another party's name; use a "
                             "fully qualified host name")
        out.append(general)
    return out


def _ca_public(ca_cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    public = ca_cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise TrustError("the CA certificate does not hold an ECDSA key")
    return public


def _read(path: Path, label: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as err:
        raise TrustError(f"missing {label}: {path} does not exist "
                         "(make the CA with `fedcredit pki ca init`)") from err
    except OSError as err:
        raise TrustError(f"cannot read {label} {path}: {err.strerror}") from err

"""The network's PKI: mint a CA and per-party certificates, load identities, verify peers."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.errors import DataValidationError, TrustError
from common.files import atomic_write
from common.names import check_party_name

OPERATOR = "operator"
CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CA_COMMON_NAME = "fedcredit network CA"
# Tolerate this much clock difference between the minting host and the others.
_BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class PkiLayout:
    """Where `init_pki` wrote the CA and each party's certificate and key."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    parties: dict[str, tuple[Path, Path]]  # party name -> (certificate, private key)


@dataclass(frozen=True)
class Identity:
    """One process's certificate, private key and the network CA, as PEM bytes."""

    name: str
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes
    cert_path: Path
    key_path: Path
    ca_path: Path


def init_pki(
    out_dir: Path,
    nodes: Sequence[str],
    coordinator: str = "coordinator",
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    days: int = 365,
    *,
    force: bool = False,
) -> PkiLayout:
    """One-machine demo shortcut: mint a CA and every party's key and certificate in one folder.

    That folder then holds every party's private key and the CA key, so whoever has it can act
    as any party: use it for the demo and tests only. In a real network each party runs
    `crypto.enrol.make_request` on its own host and the CA signs with `sign_request`.

    Refuses to replace an existing CA in `out_dir` unless `force` is true. Certificates for names
    not in this call are left in place (they stay signed by the old CA if one was replaced).
    """
    out_dir = Path(out_dir)
    parties = _party_names(nodes, coordinator)
    sans = host_names(hosts)
    ca_cert_path, ca_key_path, ca_key, ca_cert = create_ca(out_dir, days, force=force)
    written: dict[str, tuple[Path, Path]] = {}
    for name in parties:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = party_certificate(name, key.public_key(), sans, ca_key, ca_cert, days)
        cert_path, key_path = out_dir / f"{name}.crt", out_dir / f"{name}.key"
        write_private(key_path, private_key_pem(key))
        write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        written[name] = (cert_path, key_path)
    return PkiLayout(directory=out_dir, ca_cert=ca_cert_path, ca_key=ca_key_path, parties=written)


def create_ca(out_dir: Path, days: int = 365, *, force: bool = False,
              ) -> tuple[Path, Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Write a new CA key (0600) and certificate into `out_dir`; refuse to replace one unless
    `force`. Returns (certificate path, key path, key, certificate)."""
    out_dir = Path(out_dir)
    if days < 1:
        raise DataValidationError(f"certificate lifetime must be at least 1 day, got {days}")
    ca_cert_path, ca_key_path = out_dir / CA_CERT, out_dir / CA_KEY
    if not force and (ca_cert_path.exists() or ca_key_path.exists()):
        raise DataValidationError(
            f"{out_dir} already holds a CA ({CA_CERT}/{CA_KEY}); refusing to replace it, which "
            "would invalidate every certificate it signed. Pass force=True (--force) to replace it."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _make_ca(ca_key, now - _BACKDATE, now + dt.timedelta(days=days))
    write_private(ca_key_path, private_key_pem(ca_key))
    write_public(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM))
    return ca_cert_path, ca_key_path, ca_key, ca_cert


def party_certificate(name: str, public_key: ec.EllipticCurvePublicKey,
                      sans: Sequence[x509.GeneralName], ca_key: ec.EllipticCurvePrivateKey,
                      ca_cert: x509.Certificate, days: int = 365) -> x509.Certificate:
    """The one party-certificate profile: CN and DNS name = party, TLS server and client use,
    valid from a few minutes ago for `days` days (never past the CA's own end)."""
    check_party_name(name)
    if days < 1:
        raise DataValidationError(f"certificate lifetime must be at least 1 day, got {days}")
    now = dt.datetime.now(dt.UTC)
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    return _make_leaf(name, public_key, list(sans), ca_key, ca_cert, now - _BACKDATE, not_after)


def load_identity(pki_dir: Path, name: str) -> Identity:
    """Read `<name>.crt`, `<name>.key` and `ca.crt`, and check they belong together."""
    pki_dir = Path(pki_dir)
    check_party_name(name)
    cert_path, key_path = pki_dir / f"{name}.crt", pki_dir / f"{name}.key"
    ca_path = pki_dir / CA_CERT
    cert_pem = _read(cert_path, f"certificate of {name}")
    key_pem = _read(key_path, f"private key of {name}")
    ca_pem = _read(ca_path, "CA certificate")
    verify_peer_certificate(ca_pem, cert_pem, name)
    key = load_private_key(key_pem, source=str(key_path))
    cert = _load_cert(cert_pem, str(cert_path))
    if key.public_key().public_numbers() != _ec_public_key(cert, str(cert_path)).public_numbers():
        raise TrustError(f"{key_path} is not the private key of the certificate {cert_path}")
    return Identity(name=name, cert_pem=cert_pem, key_pem=key_pem, ca_pem=ca_pem,
                    cert_path=cert_path, key_path=key_path, ca_path=ca_path)


def verify_peer_certificate(
    ca_pem: bytes, cert_pem: bytes, expected_name: str, *, now: dt.datetime | None = None
) -> None:
    """Raise TrustError unless `cert_pem` is a party certificate of our CA for `expected_name`."""
    ca = _load_cert(ca_pem, "CA certificate")
    cert = _load_cert(cert_pem, f"certificate presented for {expected_name}")
    when = now if now is not None else dt.datetime.now(dt.UTC)
    if not _is_ca(ca):
        raise TrustError("the trusted CA certificate is not a CA (basicConstraints ca=false)")
    if not ca.not_valid_before_utc <= when <= ca.not_valid_after_utc:
        raise TrustError(f"the CA certificate is outside its validity period {_period(ca)}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as err:
        why = str(err) or "the signature does not verify with the CA's key"
        raise TrustError(
            f"certificate presented for {expected_name} is not signed by the network CA: {why}"
        ) from err
    if _is_ca(cert):
        raise TrustError(f"certificate presented for {expected_name} is a CA, not a party")
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise TrustError(
            f"certificate of {expected_name} is outside its validity period {_period(cert)}"
        )
    name = _common_name(cert)
    if name != expected_name:
        raise TrustError(f"certificate names {name!r}, expected {expected_name!r}")


def common_name(cert_pem: bytes) -> str:
    """The subject common name of a PEM certificate (the party name for our certificates)."""
    return _common_name(_load_cert(cert_pem, "certificate"))


def load_private_key(key_pem: bytes, *, source: str = "private key") -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted PEM ECDSA P-256 private key, or raise TrustError saying why not."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as err:
        raise TrustError(f"{source} is not an unencrypted PEM private key: {err}") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise TrustError(f"{source} is not an ECDSA P-256 key")
    return key


def load_certificate(cert_pem: bytes, *, source: str = "certificate") -> x509.Certificate:
    """Parse a PEM certificate, or raise TrustError naming `source`."""
    return _load_cert(cert_pem, source)


# helpers ------------------------------------------------------------------------------------
def _party_names(nodes: Sequence[str], coordinator: str) -> list[str]:
    if isinstance(nodes, str):
        raise DataValidationError("nodes must be a list of party names, not one string")
    names = [coordinator, OPERATOR, *nodes]
    problems = []
    for name in names:
        try:
            check_party_name(name)
        except DataValidationError as err:
            problems.append(str(err))
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.append(f"party name {name!r} is used twice "
                            f"({OPERATOR!r} and the coordinator's name are reserved)")
        seen.add(name)
    if problems:
        raise DataValidationError("cannot mint certificates:\n  - " + "\n  - ".join(problems))
    return names


def host_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """Subject alternative names for host names and IP addresses, or DataValidationError."""
    if isinstance(hosts, str):
        hosts = [hosts]
    out: list[x509.GeneralName] = []
    for host in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
            continue
        except ValueError:
            pass
        if not re.fullmatch(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", host):
            raise DataValidationError(f"host {host!r} is neither an IP address nor a DNS name")
        out.append(x509.DNSName(host.lower()))
    return list(dict.fromkeys(out))


def _make_ca(key: ec.EllipticCurvePrivateKey, not_before: dt.datetime,
             not_after: dt.datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedcredit")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _make_leaf(name: str, key: ec.EllipticCurvePublicKey, sans: list[x509.GeneralName],
               ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
               not_before: dt.datetime, not_after: dt.datetime) -> x509.Certificate:
    alt_names = [x509.DNSName(name), *(s for s in sans if s != x509.DNSName(name))]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedcredit")]))
        .issuer_name(ca_cert.subject)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )


def _period(cert: x509.Certificate) -> str:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return f"({start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC)"


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _load_cert(pem: bytes, source: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError) as err:
        raise TrustError(f"{source} is not a PEM X.509 certificate: {err}") from err


def _ec_public_key(cert: x509.Certificate, source: str) -> ec.EllipticCurvePublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise TrustError(f"{source} does not hold an ECDSA public key")
    return key


def _common_name(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) != 1:
        raise TrustError(f"certificate subject has {len(values)} common names, expected one")
    value = values[0].value
    return value if isinstance(value, str) else value.decode()


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (the file holding it is written 0600)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _read(path: Path, label: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as err:
        raise TrustError(f"missing {label}: {path} does not exist "
                         "(mint certificates with `fedcredit pki init`)") from err
    except OSError as err:
        raise TrustError(f"cannot read {label} {path}: {err.strerror}") from err


def write_private(path: Path, data: bytes) -> None:
    """Write owner-only (0600), atomically."""
    atomic_write(path, data, 0o600)


def write_public(path: Path, data: bytes) -> None:
    """Write world-readable (0644), atomically."""
    atomic_write(path, data, 0o644)

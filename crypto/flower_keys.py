"""Keys for Flower: SuperNode authentication key pairs and a SuperLink certificate from our CA."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.errors import TrustError
from common.files import atomic_write
from common.names import check_party_name
from crypto.pki import CA_CERT, CA_KEY, load_certificate

_BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class SuperNodeKey:
    """A SuperNode's authentication key pair in OpenSSH format, as Flower reads them."""

    name: str
    private_key: Path
    public_key: Path


def mint_supernode_key(out_dir: Path, name: str) -> SuperNodeKey:
    """Write ``<name>.flower.key`` (private, 0600) and ``<name>.flower.pub``: ECDSA P-384.

    The SuperLink admits only SuperNodes whose public key was registered with
    ``flwr supernode register``; the SuperNode signs its requests with the private key.
    """
    check_party_name(name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private_path, public_path = out_dir / f"{name}.flower.key", out_dir / f"{name}.flower.pub"
    atomic_write(private_path, key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.OpenSSH,
                                           serialization.NoEncryption()), 0o600)
    atomic_write(public_path, key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                      serialization.PublicFormat.OpenSSH)
           + f" fedcredit-{name}\n".encode(), 0o644)
    return SuperNodeKey(name=name, private_key=private_path, public_key=public_path)


def issue_server_certificate(
    pki_dir: Path,
    name: str,
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    days: int = 30,
) -> tuple[Path, Path]:
    """Sign a TLS server certificate for ``name`` (e.g. the SuperLink) with ``pki_dir``'s CA.

    Returns (certificate, private key) paths, written as ``<name>.crt``/``<name>.key`` in
    ``pki_dir``. Use it when the SuperLink listens on a host our party certificates do not name.
    """
    check_party_name(name)
    pki_dir = Path(pki_dir)
    try:
        ca_cert = load_certificate((pki_dir / CA_CERT).read_bytes(), source=str(pki_dir / CA_CERT))
        ca_key = serialization.load_pem_private_key((pki_dir / CA_KEY).read_bytes(),
                                                    password=None)
    except OSError as err:
        raise TrustError(f"cannot read the CA in {pki_dir}: {err.strerror}") from err
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TrustError(f"{pki_dir / CA_KEY} is not an ECDSA key")
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(name)]
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedcredit")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(dict.fromkeys(sans))), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = pki_dir / f"{name}.crt", pki_dir / f"{name}.key"
    atomic_write(key_path, key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()), 0o600)
    atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path



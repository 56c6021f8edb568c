"""Tests for the network PKI: minting, loading identities and verifying peer certificates."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from common.errors import DataValidationError, TrustError
from crypto.pki import (
    PkiLayout,
    common_name,
    init_pki,
    load_identity,
    verify_peer_certificate,
)

NODES = ("bank-a", "core-1")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    return init_pki(tmp_path_factory.mktemp("pki"), NODES)


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    return init_pki(tmp_path_factory.mktemp("other"), NODES)


def test_init_pki_writes_ca_and_one_certificate_per_party(pki: PkiLayout) -> None:
    assert set(pki.parties) == {"coordinator", "operator", *NODES}
    files = {p.name for p in pki.directory.iterdir()}
    assert {"ca.crt", "ca.key"} <= files
    for name in pki.parties:
        assert {f"{name}.crt", f"{name}.key"} <= files


def test_private_keys_are_owner_only(pki: PkiLayout) -> None:
    keys = [pki.ca_key, *(key for _, key in pki.parties.values())]
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_leaf_certificate_has_name_sans_and_both_key_usages(pki: PkiLayout) -> None:
    cert = x509.load_pem_x509_certificate(pki.parties["bank-a"][0].read_bytes())

    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value

    assert common_name(cert.public_bytes(Encoding.PEM)) == "bank-a"
    assert sans.get_values_for_type(x509.DNSName) == ["bank-a", "localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_ca_is_a_ca_that_signs_certificates(pki: PkiLayout) -> None:
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())

    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign


def test_refuses_to_replace_an_existing_ca_unless_forced(tmp_path: Path) -> None:
    first = init_pki(tmp_path, ["bank-a"])
    old_ca = first.ca_cert.read_bytes()

    with pytest.raises(DataValidationError, match="already holds a CA"):
        init_pki(tmp_path, ["bank-a"])
    assert first.ca_cert.read_bytes() == old_ca

    init_pki(tmp_path, ["bank-a"], force=True)
    assert first.ca_cert.read_bytes() != old_ca


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        (["Bank_A"], "invalid party name 'Bank_A'"),
        ([""], "invalid party name ''"),
        (["a" * 64], "invalid party name"),
        (["-bank"], "not starting or ending"),
        (["operator"], "used twice"),
        (["bank", "bank"], "used twice"),
    ],
)
def test_rejects_bad_party_names(tmp_path: Path, nodes: list[str], message: str) -> None:
    with pytest.raises(DataValidationError, match=message):
        init_pki(tmp_path, nodes)
    assert not (tmp_path / "ca.crt").exists()


def test_rejects_bad_host(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="neither an IP address nor a DNS name"):
        init_pki(tmp_path, ["bank-a"], hosts=["bad host"])


def test_load_identity_reads_matching_files(pki: PkiLayout) -> None:
    identity = load_identity(pki.directory, "core-1")

    assert identity.name == "core-1"
    assert identity.cert_pem == pki.parties["core-1"][0].read_bytes()
    assert identity.key_pem == pki.parties["core-1"][1].read_bytes()
    assert identity.ca_pem == pki.ca_cert.read_bytes()


def test_load_identity_names_the_missing_file(pki: PkiLayout) -> None:
    with pytest.raises(TrustError, match=r"nobody\.crt does not exist"):
        load_identity(pki.directory, "nobody")


def test_load_identity_rejects_a_key_from_another_party(tmp_path: Path) -> None:
    layout = init_pki(tmp_path, ["bank-a", "core-1"])
    (tmp_path / "bank-a.key").write_bytes(layout.parties["core-1"][1].read_bytes())

    with pytest.raises(TrustError, match="is not the private key"):
        load_identity(tmp_path, "bank-a")


def test_verify_accepts_own_network_certificate(pki: PkiLayout) -> None:
    verify_peer_certificate(pki.ca_cert.read_bytes(), pki.parties["bank-a"][0].read_bytes(),
                            "bank-a")


def test_verify_rejects_wrong_name(pki: PkiLayout) -> None:
    with pytest.raises(TrustError, match="certificate names 'bank-a', expected 'core-1'"):
        verify_peer_certificate(pki.ca_cert.read_bytes(), pki.parties["bank-a"][0].read_bytes(),
                                "core-1")


def test_verify_rejects_certificate_of_another_ca(pki: PkiLayout, other_pki: PkiLayout) -> None:
    with pytest.raises(TrustError, match="not signed by the network CA"):
        verify_peer_certificate(pki.ca_cert.read_bytes(),
                                other_pki.parties["bank-a"][0].read_bytes(), "bank-a")


def test_verify_rejects_expired_and_not_yet_valid(pki: PkiLayout) -> None:
    ca, cert = pki.ca_cert.read_bytes(), pki.parties["bank-a"][0].read_bytes()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=400)
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)

    for when in (later, earlier):
        with pytest.raises(TrustError, match="outside its validity period"):
            verify_peer_certificate(ca, cert, "bank-a", now=when)


def test_verify_rejects_the_ca_itself_and_garbage(pki: PkiLayout) -> None:
    ca = pki.ca_cert.read_bytes()

    with pytest.raises(TrustError, match="is a CA, not a party"):
        verify_peer_certificate(ca, ca, "fedcredit network CA")
    with pytest.raises(TrustError, match="not a PEM X.509 certificate"):
        verify_peer_certificate(ca, b"not a certificate", "bank-a")



def _tls_context(pki: PkiLayout, name: str, side: int) -> ssl.SSLContext:
    context = ssl.SSLContext(side)
    context.load_verify_locations(cafile=str(pki.ca_cert))
    cert, key = pki.parties[name]
    context.load_cert_chain(str(cert), str(key))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def test_certificates_complete_a_mutual_tls_handshake(pki: PkiLayout) -> None:
    server_ctx = _tls_context(pki, "bank-a", ssl.PROTOCOL_TLS_SERVER)
    client_ctx = _tls_context(pki, "coordinator", ssl.PROTOCOL_TLS_CLIENT)
    pipes = [ssl.MemoryBIO() for _ in range(4)]  # client in/out, server in/out
    client = client_ctx.wrap_bio(pipes[0], pipes[1], server_hostname="bank-a")
    server = server_ctx.wrap_bio(pipes[2], pipes[3], server_side=True)

    done = {"client": False, "server": False}
    for _ in range(10):
        for label, end, out, peer_in in (("client", client, pipes[1], pipes[2]),
                                         ("server", server, pipes[3], pipes[0])):
            if not done[label]:
                try:
                    end.do_handshake()
                    done[label] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if all(done.values()):
            break

    assert all(done.values())
    client_cert = server.getpeercert()
    assert client_cert is not None
    names = [pair for rdn in client_cert["subject"] for pair in rdn]
    assert ("commonName", "coordinator") in names

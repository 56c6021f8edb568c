"""Connection diagnosis and TLS file checks against a real gRPC server on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from common.errors import ListenError, TrustError
from common.probe import diagnose
from common.tls import TlsFiles, bind_problem, new_server
from crypto.pki import init_pki


def _files(pki: Path, name: str, ca: Path | None = None) -> TlsFiles:
    return TlsFiles(ca=(ca or pki) / "ca.crt", cert=pki / f"{name}.crt", key=pki / f"{name}.key")


@pytest.fixture(scope="module")
def pkis(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pki")
    init_pki(root / "ours", ["bank"])
    init_pki(root / "rogue", ["bank"])
    return root / "ours", root / "rogue"


@pytest.fixture(scope="module")
def coordinator(pkis: tuple[Path, Path]) -> Iterator[str]:
    """A TLS server holding our CA's coordinator certificate; yields its address."""
    server, port = new_server(lambda s: None, "test", "127.0.0.1:0",
                              _files(pkis[0], "coordinator"), workers=2)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=0).wait()


def _free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_the_right_certificates_pass(coordinator: str, pkis: tuple[Path, Path]) -> None:
    assert diagnose(coordinator, _files(pkis[0], "bank"), "coordinator").kind == "ok"


def test_a_server_from_another_ca_is_untrusted_and_names_our_ca(
        coordinator: str, pkis: tuple[Path, Path]) -> None:
    found = diagnose(coordinator, _files(pkis[1], "bank"), "coordinator")

    assert (found.kind, found.final) == ("untrusted", True)
    assert f"[tls] ca = {pkis[1] / 'ca.crt'}" in found.reason


def test_our_certificate_from_another_ca_is_rejected_by_the_server(
        coordinator: str, pkis: tuple[Path, Path]) -> None:
    files = _files(pkis[1], "bank", ca=pkis[0])

    found = diagnose(coordinator, files, "coordinator")

    assert (found.kind, found.final) == ("rejected", True)
    assert f"[tls] cert = {files.cert}" in found.reason


def test_a_server_of_another_party_is_a_name_mismatch(coordinator: str,
                                                      pkis: tuple[Path, Path]) -> None:
    found = diagnose(coordinator, _files(pkis[0], "bank"), "bank")

    assert (found.kind, found.final) == ("name", True)
    assert "names coordinator" in found.reason


def test_nothing_listening_is_refused_and_worth_retrying(pkis: tuple[Path, Path]) -> None:
    found = diagnose(_free_address(), _files(pkis[0], "bank"), "coordinator")

    assert (found.kind, found.final) == ("refused", False)


def test_a_name_that_does_not_resolve_is_final(pkis: tuple[Path, Path]) -> None:
    found = diagnose("no-such-host.invalid:50050", _files(pkis[0], "bank"), "coordinator")

    assert (found.kind, found.final) == ("dns", True)
    assert "no-such-host.invalid" in found.reason


def test_a_plaintext_server_is_not_tls(pkis: tuple[Path, Path]) -> None:
    server, port = new_server(lambda s: None, "test", "127.0.0.1:0", None, workers=1)
    server.start()
    try:
        found = diagnose(f"127.0.0.1:{port}", _files(pkis[0], "bank"), "coordinator")
    finally:
        server.stop(grace=0).wait()

    assert (found.kind, found.final) == ("not-tls", True)


def test_a_used_port_cannot_be_bound_twice(coordinator: str, pkis: tuple[Path, Path]) -> None:
    assert "already in use" in (bind_problem(coordinator) or "")
    with pytest.raises(ListenError, match=rf"^node bank: cannot listen on {coordinator} "
                                          r"\(listen in bank.toml\): address already in use"):
        new_server(lambda s: None, "test", coordinator, _files(pkis[0], "coordinator"),
                   workers=1, who="node bank", setting="listen in bank.toml")


def test_grpc_refuses_to_share_a_port_it_listens_on(coordinator: str) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(1), options=[("grpc.so_reuseport", 1)])
    with pytest.raises(RuntimeError):
        server.add_insecure_port(coordinator)


def test_a_key_of_another_certificate_is_not_a_pair(pkis: tuple[Path, Path]) -> None:
    files = TlsFiles(ca=pkis[0] / "ca.crt", cert=pkis[0] / "bank.crt",
                     key=pkis[0] / "coordinator.key")

    with pytest.raises(TrustError, match=r"^node bank: \[tls\] cert = .*bank.crt and \[tls\] "
                                         r"key = .*coordinator.key are not a pair"):
        files.check("node bank")


def test_a_certificate_of_another_ca_is_named_with_the_ca(pkis: tuple[Path, Path]) -> None:
    with pytest.raises(TrustError, match=r"is not issued by the CA in \[tls\] ca = "):
        _files(pkis[1], "bank", ca=pkis[0]).check("node bank")


def test_a_missing_key_file_names_the_setting(pkis: tuple[Path, Path], tmp_path: Path) -> None:
    files = TlsFiles(ca=pkis[0] / "ca.crt", cert=pkis[0] / "bank.crt", key=tmp_path / "no.key")

    with pytest.raises(TrustError, match=r"\[tls\] key = .*no.key: cannot read it"):
        files.check("node bank")

"""Mutual-TLS credentials for servers and channels, and the peer's certified name."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common.bounded import StreamLimitInterceptor
from common.errors import ListenError, TrustError
from common.limits import WireLimits

# Keep every message under gRPC's 4 MiB default: big payloads travel as streams of chunks.
# Servers set max_receive_message_length to it explicitly (SERVER_OPTIONS).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
CHANNEL_OPTIONS: Sequence[tuple[str, int | str]] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
)
# No SO_REUSEPORT: a second process on a port in use must fail, not share the port. A fixed
# flow-control window instead of BDP probing: probing grows a stream's window to many MiB, so a
# sender parks bytes in the server faster than the handler reads (and limits) them; a fixed
# window of one message bounds what a stream can park while keeping WAN throughput (4 MiB per
# round trip).
STREAM_WINDOW_BYTES = MAX_MESSAGE_BYTES
SERVER_OPTIONS: Sequence[tuple[str, int | str]] = (
    *CHANNEL_OPTIONS, ("grpc.so_reuseport", 0), ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", STREAM_WINDOW_BYTES))


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the CA certificate and this process's certificate and key (PEM)."""

    ca: Path
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        out = []
        for label, path in (("CA certificate", self.ca), ("certificate", self.cert),
                            ("private key", self.key)):
            try:
                out.append(Path(path).read_bytes())
            except OSError as err:
                raise TrustError(f"cannot read {label} {path}: {err.strerror}") from err
        return out[0], out[1], out[2]

    def check(self, where: str) -> None:
        """Raise TrustError naming the `[tls]` settings unless the files are readable PEM, the
        key belongs to the certificate and the certificate is issued by the CA."""
        ca_pem, cert_pem, key_pem = (_read(path, f"{where}: [tls] {label} = {path}")
                                     for label, path in (("ca", self.ca), ("cert", self.cert),
                                                         ("key", self.key)))
        ca = _pem_certificate(ca_pem, f"{where}: [tls] ca = {self.ca}")
        cert = _pem_certificate(cert_pem, f"{where}: [tls] cert = {self.cert}")
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as err:
            raise TrustError(f"{where}: [tls] key = {self.key} is not an unencrypted PEM "
                             f"private key") from err
        if key.public_key() != cert.public_key():
            raise TrustError(f"{where}: [tls] cert = {self.cert} and [tls] key = {self.key} "
                             f"are not a pair (the key does not belong to the certificate)")
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature) as err:
            raise TrustError(f"{where}: [tls] cert = {self.cert} is not issued by the CA in "
                             f"[tls] ca = {self.ca} (certificate and CA from different PKI "
                             f"folders?)") from err


def _read(path: Path, label: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise TrustError(f"{label}: cannot read it ({err.strerror})") from err


def _pem_certificate(pem: bytes, label: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as err:
        raise TrustError(f"{label} is not a PEM certificate") from err


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Server side of mutual TLS: a client must present a certificate signed by our CA."""
    ca, cert, key = files.read()
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """Client side of mutual TLS: present our certificate, trust only our CA."""
    ca, cert, key = files.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                        certificate_chain=cert)


def secure_channel(target: str, files: TlsFiles | None, expected_party: str) -> grpc.Channel:
    """A channel to `target` that only accepts a server whose certificate names `expected_party`.

    Every certificate carries its party name as a DNS name, so overriding the TLS target name
    makes hostname verification check the party instead of the address. `files=None` means the
    explicit development mode `--insecure`: plaintext, no identity at all.
    """
    if files is None:
        return grpc.insecure_channel(target, options=list(CHANNEL_OPTIONS))
    options = [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", expected_party)]
    return grpc.secure_channel(target, channel_credentials(files), options=options)


def peer_party(context: grpc.ServicerContext) -> str | None:
    """The common name of the caller's verified client certificate, or None without TLS."""
    auth = context.auth_context()
    names = auth.get("x509_common_name") or []
    if not names:
        return None
    name = names[0]
    return name.decode() if isinstance(name, bytes) else str(name)


def bind_problem(listen: str) -> str | None:
    """Why a listener cannot bind ``listen`` (host:port), found with a plain socket the way gRPC
    binds (SO_REUSEADDR, no SO_REUSEPORT); None when it can, or for port 0 (any free port)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if port == "0":
        return None
    try:
        infos = socket.getaddrinfo(host or None, int(port), type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (socket.gaierror, ValueError) as err:
        return f"the host does not resolve ({getattr(err, 'strerror', None) or err})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return "address already in use (another process listens on this port)"
            if err.errno == errno.EADDRNOTAVAIL:
                return "this address is not one of this machine's"
            if err.errno == errno.EACCES:
                return "permission denied (ports below 1024 need privileges)"
            return err.strerror or str(err)
    return None


def new_server(add_service: Callable[[grpc.Server], None], service_name: str, listen: str,
               files: TlsFiles | None, *, workers: int,
               interceptors: Sequence[grpc.ServerInterceptor] = (),
               who: str = "server", setting: str = "listen",
               limits: WireLimits | None = None) -> tuple[grpc.Server, int]:
    """A gRPC server (not yet started) with one service, the health service, and mutual TLS
    unless `files` is None (the explicit insecure development mode). Returns it and its port.
    Every incoming stream is cut off at `limits` (count and bytes) before it is buffered.

    Raises ListenError "<who>: cannot listen on <listen> (<setting>): <why>" when the address
    cannot be bound, e.g. because another process already listens on the port.
    """
    credentials = None if files is None else server_credentials(files)
    problem = bind_problem(listen)
    if problem is not None:
        raise ListenError(f"{who}: cannot listen on {listen} ({setting}): {problem}")
    guard = StreamLimitInterceptor(limits or WireLimits())
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         interceptors=[*interceptors, guard], options=list(SERVER_OPTIONS))
    add_service(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        if credentials is None:
            port = server.add_insecure_port(listen)
        else:
            port = server.add_secure_port(listen, credentials)
    except RuntimeError:
        port = 0
    if port == 0:  # lost a race for the port, or a cause the probe did not see
        why = bind_problem(listen) or "gRPC could not bind it (GRPC_VERBOSITY=debug says why)"
        raise ListenError(f"{who}: cannot listen on {listen} ({setting}): {why}")
    for name in ("", service_name):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port

"""Mutual-TLS credentials for servers and channels, and the peer's certified name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common.errors import TrustError

# Keep every message under gRPC's 4 MiB default: big payloads travel as streams of chunks.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
CHANNEL_OPTIONS: Sequence[tuple[str, int | str]] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
)


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


def new_server(add_service: Callable[[grpc.Server], None], service_name: str, listen: str,
               files: TlsFiles | None, *, workers: int,
               interceptors: Sequence[grpc.ServerInterceptor] = ()) -> tuple[grpc.Server, int]:
    """A gRPC server (not yet started) with one service, the health service, and mutual TLS
    unless `files` is None (the explicit insecure development mode). Returns it and its port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         interceptors=list(interceptors), options=list(CHANNEL_OPTIONS))
    add_service(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if files is None:
        port = server.add_insecure_port(listen)
    else:
        port = server.add_secure_port(listen, server_credentials(files))
    for name in ("", service_name):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port

"""The operator's connection to the coordinator (mutual TLS with the `operator` certificate)."""

from __future__ import annotations

from pathlib import Path

import grpc

from common.tls import TlsFiles, secure_channel
from proto.fedcredit.v1 import coordinator_pb2_grpc


def coordinator_stub(address: str, pki: Path, identity: str = "operator",
                     insecure: bool = False) -> coordinator_pb2_grpc.CoordinatorServiceStub:
    """A stub presenting ``identity``'s certificate from ``pki`` (plaintext when insecure)."""
    files = None if insecure else TlsFiles(ca=pki / "ca.crt", cert=pki / f"{identity}.crt",
                                          key=pki / f"{identity}.key")
    channel: grpc.Channel = secure_channel(address, files, "coordinator")
    return coordinator_pb2_grpc.CoordinatorServiceStub(channel)

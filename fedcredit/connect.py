"""The operator's connection to the coordinator (mutual TLS with the `operator` certificate)."""

from __future__ import annotations

from pathlib import Path

import grpc

from common.errors import TrustError
from common.tls import TlsFiles, secure_channel
from proto.fedcredit.v1 import coordinator_pb2_grpc

PKI_SETTING = "--pki or FEDCREDIT_PKI"


def operator_files(pki: Path, identity: str) -> TlsFiles:
    """``identity``'s TLS files in ``pki``; TrustError naming the folder setting and the file
    when one is missing."""
    files = TlsFiles(ca=pki / "ca.crt", cert=pki / f"{identity}.crt", key=pki / f"{identity}.key")
    if not pki.is_dir():
        raise TrustError(f"PKI folder {pki} not found ({PKI_SETTING}): point it at the folder "
                         f"`fedcredit pki init` wrote, with ca.crt, {identity}.crt and "
                         f"{identity}.key")
    for path in (files.ca, files.cert, files.key):
        if not path.is_file():
            raise TrustError(f"{path.name} not found in the PKI folder {pki} ({PKI_SETTING}); "
                             f"the identity is --as {identity}")
    return files


def coordinator_stub(address: str, pki: Path, identity: str = "operator",
                     insecure: bool = False) -> coordinator_pb2_grpc.CoordinatorServiceStub:
    """A stub presenting ``identity``'s certificate from ``pki`` (plaintext when insecure)."""
    files = None if insecure else operator_files(Path(pki), identity)
    channel: grpc.Channel = secure_channel(address, files, "coordinator")
    return coordinator_pb2_grpc.CoordinatorServiceStub(channel)

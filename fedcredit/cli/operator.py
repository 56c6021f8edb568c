"""The operator's connection to the coordinator (mutual TLS with the `operator` certificate)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import grpc
import typer

from common.tls import TlsFiles, secure_channel
from proto.fedcredit.v1 import coordinator_pb2_grpc

CoordinatorOpt = Annotated[str, typer.Option(
    "--coordinator", envvar="FEDCREDIT_COORDINATOR", help="Coordinator address host:port.")]
PkiOpt = Annotated[Path, typer.Option(
    "--pki", envvar="FEDCREDIT_PKI",
    help="Folder with ca.crt and the operator's certificate and key.")]
IdentityOpt = Annotated[str, typer.Option(
    "--as", envvar="FEDCREDIT_IDENTITY", help="Certificate name to present.")]
InsecureOpt = Annotated[bool, typer.Option(
    "--insecure", help="Plaintext gRPC, development only.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

DEFAULT_COORDINATOR = os.environ.get("FEDCREDIT_COORDINATOR", "127.0.0.1:50050")


def coordinator_stub(address: str, pki: Path, identity: str = "operator",
                     insecure: bool = False) -> coordinator_pb2_grpc.CoordinatorServiceStub:
    files = None if insecure else TlsFiles(ca=pki / "ca.crt", cert=pki / f"{identity}.crt",
                                          key=pki / f"{identity}.key")
    channel: grpc.Channel = secure_channel(address, files, "coordinator")
    return coordinator_pb2_grpc.CoordinatorServiceStub(channel)

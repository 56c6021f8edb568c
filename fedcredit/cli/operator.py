"""Options every operator command shares: coordinator address, PKI folder, identity, output."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from fedcredit import connect
from fedcredit.cli.shared import guarded
from proto.fedcredit.v1 import coordinator_pb2_grpc

__all__ = ["DEFAULT_COORDINATOR", "CoordinatorOpt", "IdentityOpt", "InsecureOpt", "JsonOpt",
           "PkiOpt", "coordinator_stub"]

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
    """The operator's stub; a missing PKI folder or file is one line and the TRUST exit code."""
    return guarded(lambda: connect.coordinator_stub(address, pki, identity, insecure))

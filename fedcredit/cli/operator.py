"""Options every operator command shares: coordinator address, PKI folder, identity, output."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from fedcredit.connect import coordinator_stub

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

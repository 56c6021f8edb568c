"""`fedcredit audit verify` and `audit anchors`: check an audit log's chain and its anchors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedcredit.cli.exit_codes import ExitCode
from fedcredit.cli.operator import (
    DEFAULT_COORDINATOR,
    CoordinatorOpt,
    IdentityOpt,
    InsecureOpt,
    JsonOpt,
    PkiOpt,
    coordinator_stub,
)
from fedcredit.cli.shared import console, emit_json, guarded

audit_app = typer.Typer(help="Audit logs.", no_args_is_help=True)

AnchorsOpt = Annotated[Path | None, typer.Option(
    "--anchors", help="Signed heads of this log (from `fedcredit audit anchors`, or a node's "
                      "state/anchors/coordinator.jsonl for the coordinator's log).")]
CaOpt = Annotated[Path | None, typer.Option(
    "--ca", help="The network CA certificate the anchors' signers must chain to.")]


@audit_app.command("verify")
def audit_verify(
    path: Annotated[Path, typer.Argument(help="An audit.jsonl file.")],
    anchors: AnchorsOpt = None,
    ca: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check an audit log's hash chain, and with --anchors that no anchored entry was cut off
    or rewritten; report the first bad entry."""
    from common.audit import AuditReport, read_audit_log, verify_against_anchors, verify_audit_log
    from common.errors import AuditError, DataValidationError
    from crypto.anchor import read_anchors, verify_anchor

    def check() -> AuditReport:
        if anchors is None:
            return verify_audit_log(path)
        if ca is None:
            raise DataValidationError("--anchors needs --ca: the CA the signers chain to")
        found = read_anchors(anchors)
        if not found:
            raise AuditError(f"{anchors} holds no anchors")
        try:
            ca_pem = ca.read_bytes()
        except OSError as err:
            raise DataValidationError(f"--ca {ca}: cannot read it ({err.strerror})") from err
        first = next(iter(read_audit_log(path)), None)
        actor = first.actor if first is not None else found[0].party
        for anchor in found:
            verify_anchor(ca_pem, anchor, actor)  # each signed by the log's own party
        return verify_against_anchors(path, [(a.seq, a.entry_hash) for a in found])

    report = guarded(check)
    if as_json:
        emit_json({"ok": report.ok, "entries": report.entries, "first_bad": report.first_bad,
                   "reason": report.reason})
    elif report.ok:
        console.print(f"[green]ok[/]: {report.reason}")
    else:
        console.print(f"[red]broken[/] at entry {report.first_bad}: {report.reason}")
    if not report.ok:
        raise typer.Exit(int(ExitCode.AUDIT_BROKEN))


@audit_app.command("anchors")
def audit_anchors(
    party: Annotated[str, typer.Option("--party", help="Whose anchors.")],
    out: Annotated[Path, typer.Option("--out", help="JSON-lines file to write.")],
    coordinator: CoordinatorOpt = DEFAULT_COORDINATOR,
    pki: PkiOpt = Path("pki"),
    identity: IdentityOpt = "operator",
    insecure: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Export the signed audit heads a party deposited with the coordinator."""
    from coordinator.anchors import anchor_from_wire
    from crypto.anchor import write_anchors
    from proto.fedcredit.v1 import coordinator_pb2

    stub = coordinator_stub(coordinator, pki, identity, insecure)
    reply = guarded(lambda: stub.ListAnchors(coordinator_pb2.ListAnchorsRequest(party=party),
                                             timeout=30))
    found = [anchor_from_wire(a) for a in reply.anchors]
    write_anchors(out, found)
    last = found[-1].seq if found else 0
    if as_json:
        emit_json({"party": party, "anchors": len(found), "last_seq": last, "out": str(out)})
    else:
        console.print(f"{len(found)} anchors of {party} (last entry {last}) written to {out}")

"""`fedcredit pki ...`: each party's own keys, the CA signing requests, fingerprints to pin."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedcredit.cli.shared import console, emit_json, guarded

pki_app = typer.Typer(
    help="Keys and certificates. Real network: `ca init` at the CA, `request` on each party's "
         "host, `sign` at the CA, `fingerprint` to pin peers. `init` is a one-machine demo "
         "shortcut.", no_args_is_help=True)
ca_app = typer.Typer(help="The network CA.", no_args_is_help=True)
pki_app.add_typer(ca_app, name="ca")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
DaysOpt = Annotated[int, typer.Option(help="Certificate lifetime in days.")]


@pki_app.command("init")
def pki_init(
    nodes: Annotated[str, typer.Option(help="Comma-separated party names.")],
    out: Annotated[Path, typer.Option(help="Folder for the CA and certificates.")],
    force: Annotated[bool, typer.Option(help="Replace an existing CA.")] = False,
) -> None:
    """DEMO ONLY, one machine: mint the CA and every party's private key in one folder.

    Whoever holds that folder can act as any party. For a real network use `pki ca init`,
    `pki request` on each party's host, `pki sign`, and pin peers with `pki fingerprint`.
    """
    from crypto.pki import init_pki

    names = [n.strip() for n in nodes.split(",") if n.strip()]
    guarded(lambda: init_pki(out, names, force=force))
    console.print(f"CA and certificates for coordinator, operator, {', '.join(names)} in {out} "
                  "(demo: this folder holds every party's private key)")


@ca_app.command("init")
def ca_init(
    out: Annotated[Path, typer.Option(help="Folder for ca.key (0600) and ca.crt.")],
    days: DaysOpt = 365,
    force: Annotated[bool, typer.Option(help="Replace an existing CA.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Make the network CA's key and certificate (only ca.crt ever leaves this folder)."""
    from crypto.enrol import certificate_fingerprint
    from crypto.pki import create_ca

    cert_path, key_path, _, _ = guarded(lambda: create_ca(out, days, force=force))
    fingerprint = certificate_fingerprint(cert_path.read_bytes())
    if as_json:
        emit_json({"ca_cert": str(cert_path), "ca_key": str(key_path),
                   "fingerprint": fingerprint})
        return
    console.print(f"CA certificate {cert_path} (give it to every party), key {key_path} "
                  f"(keep it here)\nSHA-256 fingerprint {fingerprint}", highlight=False,
                  soft_wrap=True)


@pki_app.command("request")
def request(
    party: Annotated[str, typer.Option(help="This party's name (the certificate's CN).")],
    out: Annotated[Path, typer.Option(help="Folder for <party>.key (0600) and <party>.csr.")],
    host: Annotated[list[str] | None, typer.Option(
        help="Host name or IP address to add to the certificate (repeatable).")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing private key.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """On this party's own host: make its private key and a signing request for the CA."""
    from crypto.enrol import make_request

    files = guarded(lambda: make_request(party, out, host or (), force=force))
    if as_json:
        emit_json({"party": files.party, "key": str(files.key), "csr": str(files.csr)})
        return
    console.print(f"private key {files.key} (stays on this host)\nsend {files.csr} to the CA; "
                  f"put the certificate it returns at {out / (party + '.crt')}", highlight=False,
                  soft_wrap=True)


@pki_app.command("sign")
def sign(
    ca: Annotated[Path, typer.Option(help="The CA folder (ca.crt and ca.key).")],
    csr: Annotated[Path, typer.Option(help="A party's certificate signing request.")],
    out: Annotated[Path, typer.Option(help="Where to write the certificate.")],
    party: Annotated[str | None, typer.Option(
        help="Refuse unless the request names this party.")] = None,
    days: DaysOpt = 365,
    as_json: JsonOpt = False,
) -> None:
    """At the CA: check a party's request and issue its certificate; prints its fingerprint."""
    from crypto.enrol import sign_request, write_certificate

    def run() -> tuple[str, str]:
        from common.errors import TrustError

        try:
            csr_pem = csr.read_bytes()
        except OSError as err:
            raise TrustError(f"cannot read the certificate request {csr}: {err.strerror}") \
                from err
        signed = sign_request(ca, csr_pem, days=days, expected_party=party)
        write_certificate(out, signed.cert_pem)
        return signed.party, signed.fingerprint

    name, fingerprint = guarded(run)
    if as_json:
        emit_json({"party": name, "cert": str(out), "fingerprint": fingerprint})
        return
    console.print(f"certificate of {name} in {out}\nSHA-256 fingerprint {fingerprint}",
                  highlight=False, soft_wrap=True)


@pki_app.command("fingerprint")
def fingerprint(
    cert: Annotated[Path, typer.Argument(help="A PEM certificate.")],
    as_json: JsonOpt = False,
) -> None:
    """Print a certificate's party and SHA-256 fingerprint, the value peers pin in [trust]."""
    from crypto.enrol import certificate_fingerprint
    from crypto.pki import common_name

    def run() -> tuple[str, str]:
        from common.errors import TrustError

        try:
            pem = cert.read_bytes()
        except OSError as err:
            raise TrustError(f"cannot read certificate {cert}: {err.strerror}") from err
        return common_name(pem), certificate_fingerprint(pem)

    name, value = guarded(run)
    if as_json:
        emit_json({"party": name, "fingerprint": value})
        return
    console.print(f'{name} = "{value}"', highlight=False, soft_wrap=True)

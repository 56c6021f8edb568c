"""Why a mutual-TLS peer cannot be reached, told with a plain socket and an `ssl` handshake.

gRPC reports every connection failure as UNAVAILABLE with a vague text; this module repeats the
connection step by step (name lookup, TCP connect, TLS handshake with our own CA, certificate and
key, the peer's certificate name) and names the first step that fails. `Diagnosis.final` marks
causes that retrying cannot fix (a name that does not resolve, a certificate not trusted).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.tls import TlsFiles

PROBE_TIMEOUT_S = 3.0
ALERT_WAIT_S = 1.0


@dataclass(frozen=True)
class Diagnosis:
    """What failed: a short kind, a sentence for the log and whether retrying could help."""

    kind: str  # dns | refused | timeout | unreachable | untrusted | rejected | name | not-tls | ok
    reason: str
    final: bool = False


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (IPv6 in brackets) as host and port."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def connect(address: str, timeout: float = PROBE_TIMEOUT_S) -> socket.socket | Diagnosis:
    """A connected TCP socket to ``address``, or the Diagnosis of why there is none."""
    host, port = split_address(address)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        return Diagnosis("dns", f"the host name {host!r} does not resolve ({err.strerror})",
                         final=True)
    last: Diagnosis = Diagnosis("unreachable", "no address to connect to")
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
            return sock
        except ConnectionRefusedError:
            last = Diagnosis("refused", "connection refused (nothing listens on that port)")
        except TimeoutError:
            last = Diagnosis("timeout", f"no answer within {timeout:.0f}s (a firewall, or the "
                                        f"wrong host?)")
        except OSError as err:
            last = Diagnosis("unreachable", err.strerror or str(err))
        sock.close()
    return last


def diagnose(address: str, files: TlsFiles | None, expected_name: str,
             timeout: float = PROBE_TIMEOUT_S) -> Diagnosis:
    """Connect to ``address`` as gRPC would and say which step fails (kind "ok" if none)."""
    sock = connect(address, timeout)
    if isinstance(sock, Diagnosis):
        return sock
    if files is None:
        sock.close()
        return Diagnosis("ok", "the port accepts connections")
    with sock:
        return _handshake(sock, files, expected_name)


def _context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # the name is checked below, to say which name it was
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(files.ca))
    context.load_cert_chain(certfile=str(files.cert), keyfile=str(files.key))
    context.set_alpn_protocols(["h2"])
    return context


def _handshake(sock: socket.socket, files: TlsFiles, expected_name: str) -> Diagnosis:
    try:
        tls = _context(files).wrap_socket(sock, server_hostname=expected_name)
    except ssl.SSLCertVerificationError as err:
        return Diagnosis("untrusted", f"its certificate is not signed by the CA in [tls] ca = "
                                      f"{files.ca} ({err.verify_message})", final=True)
    except ssl.SSLError as err:
        if "WRONG_VERSION_NUMBER" in str(err) or "record layer failure" in str(err):
            return Diagnosis("not-tls", "it does not speak TLS (started with --insecure, or "
                                        "not a fedcredit server?)", final=True)
        return _rejected(files, err)
    except (TimeoutError, OSError) as err:
        return Diagnosis("timeout", f"the TLS handshake did not finish ({err})")
    with tls:
        names = _dns_names(tls.getpeercert() or {})
        if expected_name not in names:
            return Diagnosis("name", f"its certificate names {', '.join(names) or 'nothing'}, "
                                     f"not {expected_name!r}: the address belongs to another "
                                     f"party", final=True)
        # TLS 1.3: the server checks our certificate after the client finished; a refusal
        # arrives as an alert on the first read.
        # (an HTTP/2 server speaks first: a byte means accepted, a close or alert refused).
        tls.settimeout(ALERT_WAIT_S)
        try:
            first = tls.recv(1)
        except ssl.SSLError as err:
            return _rejected(files, err)
        except TimeoutError:
            first = b"?"
        except OSError as err:
            return _rejected(files, err)
        if not first:
            return _rejected(files, None)
    return Diagnosis("ok", "the TLS handshake succeeds")


def _rejected(files: TlsFiles, err: OSError | None) -> Diagnosis:
    if isinstance(err, ssl.SSLError):
        how = f" ({(err.reason or str(err)).lower().replace('_', ' ')})"
    else:
        how = "" if err is None else f" ({err.strerror or err})"
    return Diagnosis("rejected", f"it closed the connection after seeing this process's "
                                 f"certificate [tls] cert = {files.cert}{how}: is it issued by "
                                 f"the network's CA?", final=True)


def _dns_names(cert: Mapping[str, Any]) -> list[str]:
    return [str(value) for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]

"""`fedcredit decide serve`: the bank's decision service (HTTP/JSON) beside its node."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from common.errors import ListenError
from common.lifecycle import die_with_parent
from fedcredit.cli.operator import InsecureOpt
from fedcredit.cli.shared import JsonLogsOpt, guarded

decide_app = typer.Typer(help="The bank's decision service.", no_args_is_help=True)


def _bind(listen: str) -> socket.socket:
    """A listening socket on host:port, or ListenError naming --listen."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ListenError(f"--listen {listen!r}: expected host:port")
    family = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), int(port)))
    except OSError as err:
        sock.close()
        raise ListenError(f"--listen {listen}: cannot listen there ({err.strerror})") from err
    sock.listen(128)
    return sock


@decide_app.command("serve")
def decide_serve(
    config: Annotated[Path, typer.Option(envvar="FEDCREDIT_NODE_CONFIG",
                                         help="The bank node's TOML config (keys, state).")],
    listen: Annotated[str, typer.Option(help="host:port of the HTTP API.")] = "127.0.0.1:8080",
    policy: Annotated[Path | None, typer.Option(help="Credit policy TOML.")] = None,
    model: Annotated[str, typer.Option(help="Model id; default the bank's latest.")] = "",
    insecure: InsecureOpt = False,
    json_logs: JsonLogsOpt = False,
) -> None:
    """Serve POST /v1/decisions and GET /v1/decisions/{id}; OpenAPI page at /docs."""
    import uvicorn

    from common.logs import setup_logging
    from common.production import default_to_production, refuse_in_production
    from node.config import load_node_config
    from node.decisions.api import create_app
    from node.decisions.service import DecisionService
    from node.policy import load_policy

    def run() -> None:
        die_with_parent()
        default_to_production()
        if insecure:
            refuse_in_production("--insecure (plaintext gRPC, no identities)")
        cfg = load_node_config(config)
        setup_logging(f"decide:{cfg.party}", json_mode=json_logs)
        sock = _bind(listen)
        service = DecisionService(cfg, load_policy(policy), model_id=model, insecure=insecure)
        try:
            server = uvicorn.Server(uvicorn.Config(create_app(service), log_config=None,
                                                   access_log=False))
            server.run(sockets=[sock])
        finally:
            service.close()
            sock.close()

    guarded(run)

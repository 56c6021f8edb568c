"""`fedcredit decide serve|dry-run|hits`: the bank's decision service (HTTP/JSON) beside its
node; a strategy change replayed over stored decisions; each admission rule's hits."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Annotated, Any

import typer

from common.errors import ListenError
from common.lifecycle import die_with_parent
from fedcredit.cli.operator import InsecureOpt, JsonOpt
from fedcredit.cli.shared import JsonLogsOpt, emit_json, guarded, show_result

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
    grpc_listen: Annotated[str, typer.Option(
        help="host:port of the gRPC API (fedcredit.v1.DecisionService); default none.")] = "",
    policy: Annotated[Path | None, typer.Option(help="Credit policy TOML.")] = None,
    strategy: Annotated[Path | None, typer.Option(
        help="Admission strategy TOML, over the policy's [strategy].")] = None,
    model: Annotated[str, typer.Option(help="Model id; default the bank's latest.")] = "",
    insecure: InsecureOpt = False,
    json_logs: JsonLogsOpt = False,
) -> None:
    """Serve POST /v1/decisions and GET /v1/decisions/{id}; OpenAPI page at /docs; with
    --grpc-listen also DecisionService.Decide and GetDecision over gRPC."""
    import uvicorn

    from common.logs import setup_logging
    from common.production import default_to_production, refuse_in_production
    from node.config import load_node_config
    from node.decisions.api import create_app
    from node.decisions.service import DecisionService

    def run() -> None:
        die_with_parent()
        default_to_production()
        if insecure:
            refuse_in_production("--insecure (plaintext gRPC, no identities)")
        cfg = load_node_config(config)
        setup_logging(f"decide:{cfg.party}", json_mode=json_logs)
        sock = _bind(listen)
        service = DecisionService(cfg, _policy(policy, strategy), model_id=model,
                                  insecure=insecure)
        grpc_server = None
        try:
            if grpc_listen:
                from node.decisions.grpc_api import serve_grpc

                grpc_server = serve_grpc(service, grpc_listen)
            server = uvicorn.Server(uvicorn.Config(create_app(service), log_config=None,
                                                   access_log=False))
            server.run(sockets=[sock])
        finally:
            if grpc_server is not None:
                grpc_server.stop(grace=5).wait()
            service.close()
            sock.close()

    guarded(run)


def _policy(policy: Path | None, strategy: Path | None) -> Any:
    """The policy file with its strategy replaced by the strategy file, if one is given."""
    from node.decisions.strategy import load_strategy
    from node.policy import load_policy

    loaded = load_policy(policy)
    return loaded if strategy is None else loaded.model_copy(
        update={"strategy": load_strategy(strategy)})


StoreConfigOpt = Annotated[Path, typer.Option(envvar="FEDCREDIT_NODE_CONFIG",
                                              help="The bank node's TOML config (state).")]


@decide_app.command("dry-run")
def decide_dry_run(
    strategy: Annotated[Path, typer.Argument(help="The candidate strategy TOML.")],
    config: StoreConfigOpt = Path("bank.toml"),
    policy: Annotated[Path | None, typer.Option(help="Credit policy TOML (its grades).")
                      ] = None,
    since: Annotated[str, typer.Option(help="Only decisions from this UTC time (ISO).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Replay a strategy change over stored decisions: what would change, before it goes live."""
    from node.config import load_node_config
    from node.decisions.admission import dry_run
    from node.decisions.store import DecisionStore
    from node.decisions.strategy import load_strategy
    from node.policy import load_policy

    def run() -> dict[str, Any]:
        cfg = load_node_config(config)
        candidate, loaded = load_strategy(strategy), load_policy(policy)
        store = DecisionStore(cfg.state_dir / "decisions" / "decisions.sqlite")
        try:
            return dry_run(loaded, candidate, store.records(since))
        finally:
            store.close()

    report = guarded(run)
    if as_json:
        emit_json(report)
    else:
        show_result({k: json.dumps(v) if isinstance(v, dict | list) else v
                     for k, v in report.items()}, False)


@decide_app.command("hits")
def decide_hits(config: StoreConfigOpt = Path("bank.toml"), as_json: JsonOpt = False) -> None:
    """Hits of each admission rule, by strategy version."""
    from node.config import load_node_config
    from node.decisions.store import DecisionStore

    def run() -> dict[str, dict[str, int]]:
        store = DecisionStore(load_node_config(config).state_dir / "decisions" /
                              "decisions.sqlite")
        try:
            return store.rule_hits()
        finally:
            store.close()

    hits = guarded(run)
    if as_json:
        emit_json(hits)
    else:
        show_result({f"{version} {rule}": n for version, rules in hits.items()
                     for rule, n in rules.items()}, False)

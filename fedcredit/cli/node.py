"""`fedcredit node serve`: a data holder's node."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from common.lifecycle import die_with_parent
from fedcredit.cli.operator import InsecureOpt
from fedcredit.cli.shared import JsonLogsOpt, guarded

node_app = typer.Typer(help="Run a data holder's node.", no_args_is_help=True)


@node_app.command("serve")
def node_serve(
    config: Annotated[Path, typer.Option(help="The node's TOML config.")],
    insecure: InsecureOpt = False,
    json_logs: JsonLogsOpt = False,
) -> None:
    """Validate the node's table and serve NodeService; registers with the coordinator."""
    from common.logs import setup_logging
    from common.production import default_to_production
    from node.config import load_node_config
    from node.server import serve
    from node.state import NodeState

    def run() -> None:
        die_with_parent()
        default_to_production()
        cfg = load_node_config(config)
        setup_logging(f"node:{cfg.party}", json_mode=json_logs)
        serve(NodeState.from_config(cfg, insecure=insecure), source=str(config))

    guarded(run)

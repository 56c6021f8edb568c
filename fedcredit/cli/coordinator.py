"""`fedcredit coordinator serve`: the coordinator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from common.lifecycle import die_with_parent
from fedcredit.cli.operator import InsecureOpt
from fedcredit.cli.shared import JsonLogsOpt, guarded

coordinator_app = typer.Typer(help="Run the coordinator.", no_args_is_help=True)


@coordinator_app.command("serve")
def coordinator_serve(
    config: Annotated[Path, typer.Option(help="The coordinator's TOML config.")],
    insecure: InsecureOpt = False,
    json_logs: JsonLogsOpt = False,
) -> None:
    """Serve CoordinatorService: node registry, jobs, relay."""
    from common.logs import setup_logging
    from common.production import default_to_production
    from coordinator.config import load_coordinator_config
    from coordinator.server import serve
    from coordinator.service import Coordinator

    def run() -> None:
        die_with_parent()
        default_to_production()
        cfg = load_coordinator_config(config)
        setup_logging("coordinator", json_mode=json_logs)
        serve(Coordinator(cfg, insecure=insecure), source=str(config))

    guarded(run)

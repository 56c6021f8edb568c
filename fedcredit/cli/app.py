"""The `fedcredit` command: wires one typer group per module, nothing else."""

from __future__ import annotations

import typer

from fedcredit.cli.audit import audit_app
from fedcredit.cli.bench import bench_app
from fedcredit.cli.coordinator import coordinator_app
from fedcredit.cli.data import data_app
from fedcredit.cli.decide import decide_app
from fedcredit.cli.demo import demo_cmd
from fedcredit.cli.help import help_app
from fedcredit.cli.network import align_cmd, jobs_app, models_cmd, nodes_app
from fedcredit.cli.node import node_app
from fedcredit.cli.pki import pki_app
from fedcredit.cli.portfolio import portfolio_app
from fedcredit.cli.report import report_cmd
from fedcredit.cli.score import score_cmd
from fedcredit.cli.train import train_app

app = typer.Typer(help="fedcredit: federated credit assessment for supply-chain finance.",
                  no_args_is_help=True, pretty_exceptions_enable=False)

app.add_typer(pki_app, name="pki")
app.add_typer(node_app, name="node")
app.add_typer(coordinator_app, name="coordinator")
app.add_typer(nodes_app, name="nodes")
app.command("align")(align_cmd)
app.add_typer(jobs_app, name="jobs")
app.command("models")(models_cmd)
app.add_typer(train_app, name="train")
app.command("score")(score_cmd)
app.command("report")(report_cmd)
app.add_typer(decide_app, name="decide")
app.add_typer(portfolio_app, name="portfolio")
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
app.add_typer(audit_app, name="audit")
app.command("demo")(demo_cmd)
app.add_typer(help_app, name="help")

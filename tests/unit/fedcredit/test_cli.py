"""The CLI's wiring: every command and group is where it was, and a bad input exits cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedcredit.cli.app import app
from fedcredit.cli.exit_codes import ExitCode

COMMANDS = [
    [], ["pki", "init"], ["node", "serve"], ["coordinator", "serve"], ["nodes"], ["align"],
    ["jobs"], ["jobs", "resume"], ["models"], ["train", "vlr"], ["train", "sbt"],
    ["train", "hfl"], ["score"], ["report"], ["data", "synth"], ["bench", "psi"], ["bench", "vlr"],
    ["bench", "sbt"], ["bench", "score"], ["bench", "hfl"], ["audit", "verify"], ["demo"],
    ["help", "exit-codes"], ["portfolio", "import"], ["portfolio", "rescore"],
    ["portfolio", "alerts"], ["portfolio", "lines"], ["decide", "dry-run"], ["decide", "hits"],
    ["bench", "rescore"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "fedcredit")
def test_every_command_is_wired(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])

    assert result.exit_code == ExitCode.OK, result.output
    assert "Usage:" in result.output


def test_train_hfl_with_a_bad_job_file_exits_invalid_data(tmp_path: Path) -> None:
    job = tmp_path / "hfl.toml"
    job.write_text('rounds = 0\n[[banks]]\nname = "bank-1"\n')

    result = CliRunner().invoke(app, ["train", "hfl", "--config", str(job)])

    assert result.exit_code == ExitCode.INVALID_DATA
    assert "rounds" in result.output and "banks" in result.output


def test_audit_verify_reports_a_broken_chain(tmp_path: Path) -> None:
    from common.audit import AuditLog

    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, "node:bank")
    log.append("a", rows=1)
    log.append("b", rows=2)
    lines = path.read_text().splitlines()
    entry = json.loads(lines[0])
    entry["rows"] = 99
    path.write_text("\n".join([json.dumps(entry), *lines[1:]]) + "\n")

    result = CliRunner().invoke(app, ["audit", "verify", str(path), "--json"])

    assert result.exit_code == ExitCode.AUDIT_BROKEN
    assert json.loads(result.stdout)["ok"] is False

"""`fedcredit pki`: the real route's commands are wired, and bad input exits with one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedcredit.cli.app import app
from fedcredit.cli.exit_codes import ExitCode


@pytest.mark.parametrize("command", [["pki", "ca", "init"], ["pki", "request"], ["pki", "sign"],
                                     ["pki", "fingerprint"]], ids=" ".join)
def test_the_real_route_is_wired(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])

    assert result.exit_code == ExitCode.OK, result.output


def test_init_says_it_is_a_demo_shortcut() -> None:
    result = CliRunner().invoke(app, ["pki", "init", "--help"])

    assert "DEMO ONLY" in result.output and "pki request" in result.output


def test_route_prints_a_pin_line_and_bad_input_exits_cleanly(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["pki", "ca", "init", "--out", str(tmp_path / "ca")]).exit_code == 0
    assert runner.invoke(app, ["pki", "request", "--party", "core",
                               "--out", str(tmp_path / "core")]).exit_code == 0
    signed = runner.invoke(app, ["pki", "sign", "--ca", str(tmp_path / "ca"), "--csr",
                                 str(tmp_path / "core" / "core.csr"), "--out",
                                 str(tmp_path / "core" / "core.crt")])
    printed = runner.invoke(app, ["pki", "fingerprint", str(tmp_path / "core" / "core.crt")])
    bad_name = runner.invoke(app, ["pki", "request", "--party", "Core", "--out", str(tmp_path)])
    wrong = runner.invoke(app, ["pki", "sign", "--ca", str(tmp_path / "ca"), "--csr",
                                str(tmp_path / "core" / "core.csr"), "--party", "bank",
                                "--out", str(tmp_path / "x.crt")])
    missing = runner.invoke(app, ["pki", "fingerprint", str(tmp_path / "none.crt")])

    assert signed.exit_code == 0, signed.output
    assert printed.stdout.startswith('core = "') and printed.stdout.count(":") == 31
    assert printed.stdout.split('"')[1] in signed.stdout.replace("\n", "")
    assert bad_name.exit_code == ExitCode.INVALID_DATA and "invalid party name" in bad_name.output
    assert wrong.exit_code == ExitCode.TRUST and "expected 'bank'" in wrong.output
    assert not (tmp_path / "x.crt").exists()
    assert missing.exit_code == ExitCode.TRUST and "cannot read certificate" in missing.output


def test_a_fingerprint_with_an_emoji_code_in_it_prints_as_it_is() -> None:
    """`:CD:` inside a fingerprint once printed as a CD emoji (rich's emoji codes)."""
    from fedcredit.cli.shared import console

    with console.capture() as captured:
        console.print('core = "CA:CD:B6"', highlight=False)
    assert captured.get().strip() == 'core = "CA:CD:B6"'

"""The CLI's exit-code table: every code has help, our errors map to their codes."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from common.errors import (
    AuditError,
    DataValidationError,
    FedcreditError,
    ListenError,
    PeerUnavailable,
    ProtocolError,
    TrustError,
)
from fedcredit.cli.app import app
from fedcredit.cli.exit_codes import EXIT_CODE_HELP, ExitCode, exit_code_help
from fedcredit.cli.shared import guarded


def test_every_exit_code_has_a_help_text() -> None:
    assert set(EXIT_CODE_HELP) == set(ExitCode)
    for code in ExitCode:
        assert exit_code_help(code).strip().endswith(".")


def test_exit_code_values_are_distinct_and_valid_process_codes() -> None:
    values = [int(c) for c in ExitCode]
    assert len(set(values)) == len(values)
    assert all(0 <= v < 256 for v in values)


@pytest.mark.parametrize(("error", "code"), [
    (DataValidationError("bad field"), ExitCode.INVALID_DATA),
    (TrustError("bad certificate"), ExitCode.TRUST),
    (PeerUnavailable("node down"), ExitCode.UNAVAILABLE),
    (ListenError("port in use"), ExitCode.CANNOT_LISTEN),
    (ProtocolError("refused"), ExitCode.PROTOCOL),
    (AuditError("chain broken"), ExitCode.AUDIT_BROKEN),
    (FedcreditError("other"), ExitCode.FAILED),
    (KeyboardInterrupt(), ExitCode.INTERRUPTED),
])
def test_guarded_turns_an_error_into_its_exit_code(error: BaseException, code: ExitCode) -> None:
    def fail() -> None:
        raise error

    with pytest.raises(typer.Exit) as raised:
        guarded(fail)

    assert raised.value.exit_code == code


def test_help_exit_codes_lists_every_code() -> None:
    result = CliRunner().invoke(app, ["help", "exit-codes", "--json"])

    assert result.exit_code == ExitCode.OK, result.output
    listed = {row["code"]: row for row in json.loads(result.stdout)}
    assert set(listed) == {int(c) for c in ExitCode}
    assert all(row["help"] == EXIT_CODE_HELP[ExitCode(code)] for code, row in listed.items())


def test_a_usage_error_exits_with_the_usage_code() -> None:
    result = CliRunner().invoke(app, ["train", "vlr", "--no-such-flag"])

    assert result.exit_code == ExitCode.USAGE

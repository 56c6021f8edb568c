"""`fedcredit portfolio import|alerts|lines` and `decide dry-run|hits` without a network."""

from __future__ import annotations

import json
from pathlib import Path

import tomli_w
from typer.testing import CliRunner

from fedcredit.cli.app import app
from fedcredit.cli.exit_codes import ExitCode

HEADER = "enterprise_id,line,drawn,grade,booked_at,expiry,pd,score\n"


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "bank.toml"
    path.write_text(tomli_w.dumps({
        "party": "bank", "role": "label", "coordinator": "127.0.0.1:1", "state_dir": "state",
        "tls": {"ca": "ca.crt", "cert": "bank.crt", "key": "bank.key"},
        "data": {"source": "csv", "path": "bank.csv", "label_column": "default"}}))
    return path


def test_import_books_accounts_and_names_a_bad_cell(tmp_path: Path) -> None:
    config = _config(tmp_path)
    good = tmp_path / "book.csv"
    good.write_text(HEADER + "E1,100000,0,B,2026-01-01,2027-01-01,0.03,590\n"
                    "E2,50000,1000,C,2026-01-01,2027-01-01,,\n")
    result = CliRunner().invoke(app, ["portfolio", "import", str(good), "--config", str(config),
                                      "--json", "--no-warm"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"booked": 2, "pseudonyms_made": None}
    result = CliRunner().invoke(app, ["portfolio", "import", str(good), "--config", str(config),
                                      "--json"])  # no network to make pseudonyms ahead with
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["booked"] == 2 and out["pseudonyms_made"] is None
    assert "the next review makes them" in out["warning"]
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "E3,-5,0,B,2026-01-01,2027-01-01,,\n")
    result = CliRunner().invoke(app, ["portfolio", "import", str(bad), "--config", str(config)])
    assert result.exit_code == ExitCode.INVALID_DATA
    assert "line 2, column line" in result.output
    for command in (["portfolio", "alerts", "--jsonl"], ["portfolio", "lines", "--json"]):
        result = CliRunner().invoke(app, [*command, "--config", str(config)])
        assert result.exit_code == 0, result.output
    assert CliRunner().invoke(app, ["portfolio", "lines", "--json", "--config",
                                    str(config)]).output.strip() == "[]"


def test_dry_run_over_an_empty_store_and_a_bad_strategy(tmp_path: Path) -> None:
    config = _config(tmp_path)
    strategy = tmp_path / "s.toml"
    strategy.write_text('[[rules]]\nname = "KO"\noutcome = "knock_out"\n'
                        'when = [{field = "pd", op = ">", value = 0.2}]\n')
    result = CliRunner().invoke(app, ["decide", "dry-run", str(strategy), "--config",
                                      str(config), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["replayed"] == 0
    strategy.write_text('[[rules]]\nname = "KO"\noutcome = "nope"\nwhen = []\n')
    result = CliRunner().invoke(app, ["decide", "dry-run", str(strategy), "--config",
                                      str(config)])
    assert result.exit_code == ExitCode.INVALID_DATA and "rule 'KO'" in result.output
    result = CliRunner().invoke(app, ["decide", "hits", "--config", str(config), "--json"])
    assert result.exit_code == 0 and json.loads(result.output) == {}

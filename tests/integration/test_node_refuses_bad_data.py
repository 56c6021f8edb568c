"""A node with invalid data refuses to start and names file, row and column of every problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from common.uscc import generate_uscc
from crypto.pki import init_pki
from fedcredit.cli.exit_codes import ExitCode


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    init_pki(folder, ["bank"])
    return folder


def _serve(tmp_path: Path, pki: Path, csv_text: str) -> subprocess.CompletedProcess[str]:
    data = tmp_path / "bank.csv"
    data.write_text(csv_text)
    config = tmp_path / "bank.toml"
    config.write_text(tomli_w.dumps({
        "party": "bank", "role": "label", "listen": "127.0.0.1:0",
        "coordinator": "127.0.0.1:9", "state_dir": str(tmp_path / "state"),
        "tls": {"ca": str(pki / "ca.crt"), "cert": str(pki / "bank.crt"),
                "key": str(pki / "bank.key")},
        "data": {"source": "csv", "path": str(data), "id_column": "id",
                 "label_column": "default", "features": ["x1", "x2"]},
    }))
    return subprocess.run([sys.executable, "-m", "fedcredit.cli.main", "node", "serve",
                           "--config", str(config)], capture_output=True, text=True, timeout=60)


IDS = generate_uscc(np.random.default_rng(1), 4)


@pytest.mark.parametrize(("rows", "row", "column", "expected"), [
    ([f"{IDS[0][:-1]}?,0,1,2", f"{IDS[1]},1,1,2"], 1, "id", "18"),
    ([f"{IDS[0]},0,1,2", f"{IDS[0]},1,1,2"], 2, "id", "duplicate"),
    ([f"{IDS[0]},0,1,abc", f"{IDS[1]},1,1,2"], 1, "x2", "number"),
    ([f"{IDS[0]},0,1,2", f"{IDS[1]},2,1,2"], 2, "default", "0 or 1"),
])
def test_node_refuses_to_start(tmp_path: Path, pki: Path, rows: list[str], row: int,
                               column: str, expected: str) -> None:
    result = _serve(tmp_path, pki, "id,default,x1,x2\n" + "\n".join(rows) + "\n")

    assert result.returncode == ExitCode.INVALID_DATA, result.stderr
    message = " ".join(result.stderr.split())
    assert "bank.csv" in message
    assert f"row {row}" in message
    assert column in message
    assert expected in message.lower()
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").iterdir())


def test_every_problem_is_listed_at_once(tmp_path: Path, pki: Path) -> None:
    result = _serve(tmp_path, pki, "id,default,x1,x2\n"
                    f"{IDS[0]},7,1,2\n{IDS[1]},0,oops,2\n{IDS[1]},1,1,2\n")

    assert result.returncode == ExitCode.INVALID_DATA
    message = " ".join(result.stderr.split())
    assert "default" in message and "x1" in message and "duplicate" in message.lower()

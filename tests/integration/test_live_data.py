"""Live data through real processes: a feature node's file rewritten badly, then well."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from fedcredit.bench.decide_load import decision_service
from fedcredit.demo.parties import party_specs
from fedcredit.evaluate import load_party_tables
from fedcredit.launcher import LocalNetwork
from fedcredit.synth import synthesize
from node.config import load_node_config
from proto.fedcredit.v1 import coordinator_pb2
from tests.integration.conftest import run_job
from tests.integration.decision_http import call

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Live:
    net: LocalNetwork
    core_csv: Path
    enterprise: str  # held by the bank and by core
    url: str


def _cli(net: LocalNetwork, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedcredit.cli.main", *args, "--coordinator",
         net.coordinator_address, "--pki", str(net.pki_dir), "--as", "operator", "--json"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=120, cwd=ROOT)


def _rewrite(path: Path, change: Any) -> None:
    """Rewrite the CSV whole (a new file renamed over the old one), rows changed by `change`."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0])
    change(rows, fields)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _core_status(net: LocalNetwork) -> dict[str, Any]:
    done = _cli(net, "nodes")
    assert done.returncode == 0, done.stderr
    return next(n for n in json.loads(done.stdout) if n["party"] == "core")["snapshot"]


def _decide(live: Live) -> dict[str, Any]:
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    status, out = call(live.url + "/v1/decisions", {
        "enterprise_id": live.enterprise,
        "consent": {"reference": "LIVE-1", "expires_at": expiry.isoformat()}})
    assert status == 201, out
    return out


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("live")
    synth = synthesize(root / "data", enterprises=800, seed=9)
    specs = [replace(s, data={**s.data, "refresh_seconds": 0.5}) if s.name == "core" else s
             for s in party_specs(synth)]
    net = LocalNetwork(root, specs)
    with net:
        net.start(timeout=120)
        stub = net.stub()
        stub.Align(coordinator_pb2.AlignRequest(label_party="bank", job_id="al"), timeout=300)
        job = run_job(stub, "tr", "vlr", {"batch_size": 256, "max_epochs": 1},
                      features=["core", "logistics", "tax"], model_name="")
        assert job.state == "done", job
        tables = load_party_tables({s.name: s.data for s in specs}, "bank")
        held = set(tables["core"].ids)
        enterprise = next(i for i in tables["bank"].ids if i in held)
        with decision_service(net, "bank") as url:
            yield Live(net=net, core_csv=Path(synth.parties["core"].path), enterprise=enterprise,
                       url=url)


def test_a_bad_rewrite_is_refused_and_a_good_one_is_used_and_recorded(live: Live) -> None:
    first = _core_status(live.net)
    assert first["version"].startswith("v1-") and not first.get("refused_reason")
    before = _decide(live)
    assert before["snapshots"]["core"] == first["version"]
    assert set(before["snapshots"]) == {"bank", "core", "logistics", "tax"}

    def bad(rows: list[dict[str, str]], fields: list[str]) -> None:
        rows[3][fields[1]] = "not-a-number"  # a text value in a numeric column

    _rewrite(live.core_csv, bad)
    deadline = time.monotonic() + 30  # the schedule (0.5 s) finds it, the heartbeat reports it
    while not (status := _core_status(live.net)).get("refused_reason"):
        assert time.monotonic() < deadline, status
        time.sleep(0.3)
    assert status["version"] == first["version"]  # still serving the previous snapshot
    assert repr(fields_of(live.core_csv)[1]) in status["refused_reason"]
    assert "not-a-number" not in status["refused_reason"]  # never a value to the coordinator
    during = _decide(live)
    assert during["snapshots"]["core"] == first["version"]
    assert during["pd"] == pytest.approx(before["pd"], abs=1e-9)

    def good(rows: list[dict[str, str]], fields: list[str]) -> None:
        rows[3][fields[1]] = "1"
        for row in rows:  # every enterprise's value grew
            with contextlib.suppress(ValueError):  # a missing value stays missing
                row[fields[1]] = str(float(row[fields[1]]) * 1.5 + 1)

    _rewrite(live.core_csv, good)
    done = _cli(live.net, "nodes", "reload", "core")
    assert done.returncode == 0, done.stderr
    reloaded = json.loads(done.stdout)
    assert reloaded["outcome"] in ("loaded", "unchanged")  # the schedule may have been first
    status = _core_status(live.net)
    assert status["version"] != first["version"] and status["version"].startswith("v2-")
    assert not status.get("refused_reason")
    after = _decide(live)
    assert after["snapshots"]["core"] == status["version"]
    code, stored = call(live.url + f"/v1/decisions/{after['decision_id']}")
    assert code == 200 and stored["snapshots"] == after["snapshots"]
    log = (live.net.workdir / "state" / "core" / "audit.jsonl").read_text().splitlines()
    events = [json.loads(line)["event"] for line in log]
    assert "data.refused" in events and "data.loaded" in events


def fields_of(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return next(csv.reader(f))


def _bank_status(net: LocalNetwork) -> dict[str, Any]:
    done = _cli(net, "nodes")
    assert done.returncode == 0, done.stderr
    return next(n for n in json.loads(done.stdout) if n["party"] == "bank")["snapshot"]


def test_the_decision_service_follows_the_banks_own_live_table(live: Live) -> None:
    bank_csv = Path(load_node_config(live.net.config_path("bank")).data.path or "")
    before = _decide(live)
    assert before["snapshots"]["bank"] == _bank_status(live.net)["version"]
    model = load_node_config(live.net.config_path("bank")).data.features or fields_of(
        bank_csv)[1:2]

    def grown(rows: list[dict[str, str]], fields: list[str]) -> None:
        for row in rows:  # the bank's own values of every customer moved
            with contextlib.suppress(ValueError):
                row[model[0]] = str(float(row[model[0]]) * 3 + 2)

    _rewrite(bank_csv, grown)
    done = _cli(live.net, "nodes", "reload", "bank")
    assert done.returncode == 0, done.stderr
    node_version = _bank_status(live.net)["version"]
    assert node_version.split("-")[1] != before["snapshots"]["bank"].split("-")[1]
    deadline = time.monotonic() + 30  # no restart: the service re-reads the changed file
    while (after := _decide(live))["snapshots"]["bank"] == before["snapshots"]["bank"]:
        assert time.monotonic() < deadline, after
        time.sleep(0.5)
    assert after["snapshots"]["bank"] == node_version  # one content, one version in both
    assert after["pd"] != pytest.approx(before["pd"], abs=1e-9)
    code, stored = call(live.url + f"/v1/decisions/{after['decision_id']}")
    assert code == 200 and stored["snapshots"]["bank"] == after["snapshots"]["bank"]

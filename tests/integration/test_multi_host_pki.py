"""The multi-host route: each party makes its own key, the CA signs requests, peers are pinned."""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fedcredit.cli.app import app
from fedcredit.evaluate import load_party_tables, plaintext_probabilities
from fedcredit.launcher import LocalNetwork
from node.config import load_node_config
from node.policy import CreditPolicy
from node.scoring.bank import BankScorer
from proto.fedcredit.v1 import coordinator_pb2, node_pb2
from tests.integration.conftest import Tables, run_job

NODES = ("bank", "core", "logistics")
PARTIES = (*NODES, "coordinator", "operator")


def _cli(*args: str) -> dict[str, str]:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    parsed: dict[str, str] = json.loads(result.stdout)
    return parsed


def _enrol(root: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """What each host and the CA do, with only public files (CSRs, certificates) moving."""
    ca, inbox = root / "ca", root / "ca-inbox"
    _cli("pki", "ca", "init", "--out", str(ca))
    folders: dict[str, Path] = {}
    fingerprints: dict[str, str] = {}
    for party in PARTIES:
        host = root / "hosts" / party
        request = _cli("pki", "request", "--party", party, "--out", str(host))
        inbox.mkdir(exist_ok=True)
        csr = Path(shutil.copy(request["csr"], inbox))  # sent to the CA
        signed = _cli("pki", "sign", "--ca", str(ca), "--csr", str(csr), "--party", party,
                      "--out", str(inbox / f"{party}.crt"))
        shutil.copy(signed["cert"], host / f"{party}.crt")  # sent back, with the CA certificate
        shutil.copy(ca / "ca.crt", host / "ca.crt")
        printed = _cli("pki", "fingerprint", str(host / f"{party}.crt"))
        assert printed["party"] == party and printed["fingerprint"] == signed["fingerprint"]
        folders[party], fingerprints[party] = host, printed["fingerprint"]
    return folders, fingerprints


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory,
             tables: Tables) -> Iterator[tuple[LocalNetwork, dict[str, Path]]]:
    root = tmp_path_factory.mktemp("multi-host")
    folders, fingerprints = _enrol(root)
    pins = {node: {peer: fingerprints[peer] for peer in NODES if peer != node} for node in NODES}
    net = LocalNetwork(root / "run", tables.specs, party_pki=folders, pins=pins)
    with net:
        net.start(timeout=120)
        yield net, folders


def test_no_folder_holds_another_partys_private_key(
        enrolled: tuple[LocalNetwork, dict[str, Path]]) -> None:
    net, folders = enrolled
    root = net.workdir.parent
    for party, folder in folders.items():
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [f"{party}.key", f"{party}.csr", f"{party}.crt", "ca.crt"])
        assert stat.S_IMODE((folder / f"{party}.key").stat().st_mode) == 0o600
    assert [p.name for p in (root / "ca").iterdir() if p.suffix == ".key"] == ["ca.key"]
    assert not [p for p in (root / "ca-inbox").iterdir() if p.suffix == ".key"]
    assert not (net.workdir / "pki").exists()  # the demo shortcut was not used
    for party in NODES:
        config = load_node_config(net.config_path(party))
        assert config.tls.key == folders[party] / f"{party}.key"
        assert set(config.trust.peers) == set(NODES) - {party}


def test_alignment_training_and_joint_scoring_work(
        enrolled: tuple[LocalNetwork, dict[str, Path]], tables: Tables) -> None:
    net, _ = enrolled
    stub = net.stub()
    stub.Align(coordinator_pb2.AlignRequest(label_party="bank", mode=node_pb2.PSI_MODE_FULL,
                                            job_id="al"), timeout=300)
    job = run_job(stub, "tr", "vlr", {"batch_size": 128, "max_epochs": 2},
                  features=["core", "logistics"], model_name="", timeout=300)
    assert job.state == "done", job.error

    scorer = BankScorer(load_node_config(net.config_path("bank")), CreditPolicy())
    try:
        party_tables = load_party_tables({s.name: s.data for s in tables.specs}, "bank")
        ids = list(party_tables["bank"].ids[:60])
        decisions = scorer.score(ids, consent="consent-multi-host")
    finally:
        scorer.close()
    expected = plaintext_probabilities(net.workdir / "state", party_tables, "tr", ids)
    assert np.abs(np.asarray([d.probability for d in decisions]) - expected).max() < 1e-4
    for name in NODES:
        audit = (net.workdir / "state" / name / "audit.jsonl").read_text()
        assert "trust.refused" not in audit

"""A scoring network as real processes for the scoring attacks: coordinator, bank, three holders.

Synthetic chain of 1,200 enterprises, aligned and a vertical LR trained (job "tr"), every process
a child with mutual TLS (`fedcredit.launcher.LocalNetwork`). `Scoring` carries what the attack
tests read: the network, each party's table (ground truth, for the asserts only) and helpers to
open a bank scorer, call a feature node as the coordinator would, and read audit logs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from common.tls import TlsFiles, secure_channel
from fedcredit.demo.parties import FEATURE_PARTIES, party_specs
from fedcredit.evaluate import load_party_tables
from fedcredit.launcher import LocalNetwork
from fedcredit.synth import synthesize
from node.config import load_node_config
from node.datasource import NodeTable
from node.policy import CreditPolicy
from node.scoring.bank import BankScorer
from proto.fedcredit.v1 import coordinator_pb2, node_pb2_grpc
from tests.integration.conftest import run_job

JOB = "tr"


@dataclass
class Scoring:
    """The running network and the ground truth the asserts compare against."""

    net: LocalNetwork
    tables: dict[str, NodeTable]

    def state(self, party: str) -> Path:
        return self.net.workdir / "state" / party

    def scorer(self, cls: type[BankScorer] = BankScorer) -> BankScorer:
        return cls(load_node_config(self.net.config_path("bank")), CreditPolicy())

    def audit(self, party: str) -> list[dict[str, Any]]:
        lines = (self.state(party) / "audit.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    def node_stub(self, party: str) -> tuple[grpc.Channel, node_pb2_grpc.NodeServiceStub]:
        """A channel to a feature node with the coordinator's own certificate (a relay)."""
        folder = self.net.pki_folder("coordinator")
        address = load_node_config(self.net.config_path(party)).listen
        channel = secure_channel(address, TlsFiles(ca=folder / "ca.crt",
                                                   cert=folder / "coordinator.crt",
                                                   key=folder / "coordinator.key"), party)
        return channel, node_pb2_grpc.NodeServiceStub(channel)

    def holders(self) -> dict[str, set[str]]:
        return {name: set(t.ids) for name, t in self.tables.items()}


@contextmanager
def scoring_network(root: Path) -> Iterator[Scoring]:
    synth = synthesize(root / "data", enterprises=1200, seed=21)
    specs = party_specs(synth)
    with LocalNetwork(root, specs) as net:
        net.start(timeout=120)
        stub = net.stub()
        stub.Align(coordinator_pb2.AlignRequest(label_party="bank", job_id="al"), timeout=300)
        assert run_job(stub, JOB, "vlr", {"batch_size": 256, "max_epochs": 2},
                       features=FEATURE_PARTIES, model_name="").state == "done"
        yield Scoring(net=net, tables=load_party_tables({s.name: s.data for s in specs}, "bank"))

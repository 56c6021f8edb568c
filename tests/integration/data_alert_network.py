"""A network whose feature nodes' data deteriorates for some SMEs, for the data-alert tests.

A synthetic chain of 1,200 enterprises, a coordinator (in this process, tapped) and the bank,
core, logistics and tax as real processes with the demo's `[monitoring]` limits; a vertical LR
is trained (each feature node keeps its training snapshot as the reference), then
`fedcredit.synth_shift` rewrites the feature tables (10 % of the SMEs deteriorate, 10 % improve)
and each node reloads live. `AlertNet` holds the ground truth for the asserts: each node's tables
before and after, and each node's own level of every enterprise it holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedcredit.demo.parties import FEATURE_PARTIES, MONITORING, party_specs
from fedcredit.evaluate import load_party_tables
from fedcredit.launcher import LocalNetwork
from fedcredit.synth import synthesize
from fedcredit.synth_shift import Shift, shift_chain
from node.config import load_node_config
from node.datasource import NodeTable
from node.monitoring.limits import MonitoringConfig, levels
from node.policy import CreditPolicy
from node.scoring.bank import BankScorer
from proto.fedcredit.v1 import coordinator_pb2
from tests.integration.conftest import run_job, tapped_network
from tests.integration.wiretap import WireTap

JOB = "tr"


@dataclass
class AlertNet:
    net: LocalNetwork
    tap: WireTap
    before: dict[str, NodeTable]
    after: dict[str, NodeTable]
    shift: Shift

    def scorer(self, cls: type[BankScorer] = BankScorer) -> BankScorer:
        return cls(load_node_config(self.net.config_path("bank")), CreditPolicy())

    def node_levels(self, party: str) -> dict[str, int]:
        """The level `party` computes for each enterprise it holds (ground truth)."""
        config = MonitoringConfig.model_validate(MONITORING[party])
        old, new = self.before[party], self.after[party]
        row = {i: k for k, i in enumerate(old.ids)}
        then = np.full(new.X.shape, np.nan)
        for k, ident in enumerate(new.ids):
            if ident in row:
                then[k] = old.X[row[ident]]
        found = levels(config, new.features, then, new.X)
        return dict(zip(new.ids, found.tolist(), strict=True))

    def holders(self) -> dict[str, set[str]]:
        return {name: set(t.ids) for name, t in self.after.items()}


@contextmanager
def alert_network(root: Path) -> Iterator[AlertNet]:
    synth = synthesize(root / "data", enterprises=1200, seed=21)
    specs = party_specs(synth)
    data = {s.name: s.data for s in specs}
    with tapped_network(root, specs) as (net, tap):
        stub = net.stub()
        stub.Align(coordinator_pb2.AlignRequest(label_party="bank", job_id="al"), timeout=300)
        assert run_job(stub, JOB, "vlr", {"batch_size": 256, "max_epochs": 2},
                       features=FEATURE_PARTIES, model_name="").state == "done"
        before = load_party_tables(data, "bank")
        shift = shift_chain(synth.out_dir, deteriorate=0.1, improve=0.1, seed=5)
        assert net.reload_nodes(FEATURE_PARTIES) == {p: "loaded" for p in FEATURE_PARTIES}
        after = load_party_tables(data, "bank")
        tap.clear()
        yield AlertNet(net=net, tap=tap, before=before, after=after, shift=shift)

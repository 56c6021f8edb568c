"""`fedcredit bench rescore`: a portfolio review of N accounts through the batch scoring path,
with the feature nodes' data alerts, as `fedcredit portfolio rescore --data-alerts` reviews.

The same real network as `bench score` (coordinator, bank and three feature nodes as processes
with mutual TLS, a 20,000-SME chain, aligned and trained first; each feature node with the
demo's own `[monitoring]` limits, `fedcredit.demo.parties`). After training, the feature nodes'
data changes (`fedcredit.synth_shift`: `SHIFT` of the SMEs deteriorate, as many improve, all
drift) and each node re-reads it live, so the data alerts have something to find. A portfolio of
`n_ids` accounts (every id the parties know, then valid USCC ids nobody knows: refer, unscored,
the same cost on the wire) is booked in the bank's portfolio store and reviewed twice: the first
review makes every pseudonym, the second (as the next scheduled review) reads them from the
bank's cache, as every review of a bank that imports its portfolio with `fedcredit portfolio
import` (which makes the pseudonyms ahead) or runs the decision service (which warms its
portfolio's). Each review is the whole of a real one: batch scoring, the data-alert request to
every feature node (split by the nodes' `max_ids_per_request` as scoring is), tiers, lines,
re-credit, PSI and the store's writes.

`review_*` is the first review, `review_warm_*` the second: `*_seconds` the whole review (data
alerts included), `*_scoring_seconds` its batch scoring, `*_data_alerts_seconds` and
`*_data_alerts_cpu_seconds` its data-alert request alone, `*_cpu_seconds` the CPU time of every
process of the network on the review (worker pools included), which other work on a shared
machine does not inflate; `*_pseudonyms_made` the ids whose pseudonym the review had the
coordinator evaluate (0 on the warm review: scoring and data alerts both read the cache);
`review_warm_data_alert_requests` the ids of each data-alert request of the warm review, as the
bank audited them (one request unless the nodes' `max_ids_per_request`, which `max_ids_per_request`
sets for every feature node, is below the portfolio's size).
`data_alert_levels` counts the accounts by aggregate level on the warm review. `within_budget`
is the warm review, data alerts included (`within_budget_includes_data_alerts`), within 60 s.
The plaintext baseline (`plaintext_scoring_seconds`) is the same model evaluated in the clear on
the same ids in the same run, by a party holding every table (which nobody does).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from crypto.psi_pool import PSI_POINT_BYTES
from fedcredit.bench.score import _tree_cpu_seconds, align_and_train, batch_ids
from fedcredit.demo.parties import FEATURE_PARTIES, LABEL_PARTY, party_specs
from fedcredit.evaluate import load_party_tables, plaintext_probabilities
from fedcredit.launcher import LocalNetwork
from fedcredit.synth import synthesize
from fedcredit.synth_shift import shift_chain
from node.config import load_node_config
from node.policy import CreditPolicy
from node.portfolio.review import iso, rescore
from node.portfolio.store import Account, PortfolioStore
from node.scoring.bank import BankScorer
from node.scoring.data_alerts import DataAlertLevels, request_data_alerts
from node.scoring.warm import PseudonymSource

BUDGET_SECONDS = 60.0
SHIFT = 0.05  # share of the chain's SMEs whose feature data deteriorates (as many improve)


class _CountingSource(PseudonymSource):
    """The bank's pseudonym source, counting the points it has the coordinator evaluate."""

    points = 0

    def _evaluate(self, points: bytes) -> tuple[bytes, str]:
        self.points += len(points) // PSI_POINT_BYTES
        return super()._evaluate(points)


class _TimedDataAlerts:
    """The review's data-alert source (`request_data_alerts`, as the lifecycle wires it),
    timing each request in seconds and in CPU seconds of every process of the network."""

    def __init__(self, scorer: BankScorer, pids: list[int]) -> None:
        self.scorer, self.pids = scorer, pids
        self.seconds = self.cpu_seconds = 0.0

    def __call__(self, ids: Sequence[str], consent: str) -> DataAlertLevels:
        cpu, started = _tree_cpu_seconds(self.pids), time.perf_counter()
        found = request_data_alerts(self.scorer, ids, consent)
        self.seconds = time.perf_counter() - started
        self.cpu_seconds = _tree_cpu_seconds(self.pids) - cpu
        return found


def _requests(audit: Path, event: str) -> list[int]:
    """The ids of each `event` request in the bank's audit log, in order."""
    return [e["rows"] for e in map(json.loads, audit.read_text().splitlines())
            if e["event"] == event]


def run_rescore_benchmark(n_ids: int, enterprises: int = 20000, seed: int = 11,
                          max_ids_per_request: int | None = None) -> dict[str, Any]:
    """Book `n_ids` accounts and review them twice (see the module's docstring); with
    `max_ids_per_request`, every feature node's `[scoring]` cap is that."""
    with tempfile.TemporaryDirectory(prefix="fedcredit-bench-rescore-") as tmp:
        root = Path(tmp)
        synth = synthesize(root / "data", enterprises=enterprises, seed=seed)
        specs = party_specs(synth)
        if max_ids_per_request is not None:
            cap = {"scoring": {"max_ids_per_request": max_ids_per_request}}
            specs = [replace(s, settings={**s.settings, **cap}) if s.role == "feature" else s
                     for s in specs]
        with LocalNetwork(root, specs) as net:
            align_and_train(net)  # each feature node keeps its training snapshot as reference
            shift_chain(synth.out_dir, deteriorate=SHIFT, improve=SHIFT, seed=seed)
            reloads = net.reload_nodes(FEATURE_PARTIES)
            tables = load_party_tables({p.name: p.data for p in net.parties}, LABEL_PARTY)
            known, ids = batch_ids(tables, n_ids, seed)
            now = dt.datetime.now(dt.UTC)
            expiry = iso(now + dt.timedelta(days=200))
            store = PortfolioStore(root / "portfolio.sqlite")
            started = time.perf_counter()
            store.book([Account(enterprise_id=i, line=500_000.0, drawn=100_000.0, grade="B",
                                pd=0.03, score=580.0, booked_at=iso(now), expiry=expiry)
                        for i in ids])
            book_seconds = time.perf_counter() - started
            scorer = BankScorer(load_node_config(net.config_path(LABEL_PARTY)), CreditPolicy(),
                                table=tables[LABEL_PARTY])
            source = scorer.source = _CountingSource(scorer.stub, scorer.cache, scorer.workers)
            pids = [os.getpid(), *(p.pid for p in net.processes.values())]
            alerts = _TimedDataAlerts(scorer, pids)
            audit = net.workdir / "state" / LABEL_PARTY / "audit.jsonl"
            asked = len(_requests(audit, "data_alerts"))
            try:
                cpu = _tree_cpu_seconds(pids)
                first = rescore(scorer, store, consent="bench-review-1", now=now,
                                data_alerts=alerts)
                first_cpu = _tree_cpu_seconds(pids) - cpu
                first_alerts, first_made = (alerts.seconds, alerts.cpu_seconds), source.points
                second = rescore(scorer, store, consent="bench-review-2",
                                 now=now + dt.timedelta(minutes=15), data_alerts=alerts)
                second_cpu = _tree_cpu_seconds(pids) - cpu - first_cpu
                second_made = source.points - first_made
                max_ids = scorer.max_ids
            finally:
                scorer.close()
                store.close()
            requests = _requests(audit, "data_alerts")[asked:]  # both reviews', in order
            started = time.perf_counter()
            plaintext_probabilities(root / "state", tables, "tr", ids)
            plain_seconds = time.perf_counter() - started
    counts = second["data_alerts"]
    return {"accounts": n_ids, "known_ids": min(len(known), n_ids),
            "book_seconds": round(book_seconds, 3),
            "review_seconds": first["seconds"], "review_scoring_seconds": first["scoring_seconds"],
            "review_warm_seconds": second["seconds"],
            "review_warm_scoring_seconds": second["scoring_seconds"],
            "review_cpu_seconds": round(first_cpu, 1),
            "review_warm_cpu_seconds": round(second_cpu, 1),
            "review_data_alerts_seconds": round(first_alerts[0], 3),
            "review_data_alerts_cpu_seconds": round(first_alerts[1], 1),
            "review_warm_data_alerts_seconds": round(alerts.seconds, 3),
            "review_warm_data_alerts_cpu_seconds": round(alerts.cpu_seconds, 1),
            "review_pseudonyms_made": first_made, "review_warm_pseudonyms_made": second_made,
            "max_ids_per_request": max_ids,
            "review_warm_data_alert_requests": requests[len(requests) // 2:],
            "cores": os.cpu_count(),
            "scored": first["scored"], "unscored": first["unscored"],
            "alerts": first["alerts"], "score_psi": first["score_psi"],
            "feature_shift": {"share_deteriorated": SHIFT, "share_improved": SHIFT,
                              "nodes_reloaded": reloads},
            "data_alert_levels": {"none": n_ids - sum(counts.values())
                                  - second["data_alerts_refused"], **counts},
            "data_alerts_refused": second["data_alerts_refused"],
            "warm_alert_sources": second["alert_sources"],
            "warm_frozen_by_data": second["frozen_by_data"],
            "plaintext_scoring_seconds": round(plain_seconds, 3),
            "warm_scoring_ratio": round(second["scoring_seconds"] / max(plain_seconds, 1e-9), 1),
            "budget_seconds": BUDGET_SECONDS,
            "within_budget": bool(second["seconds"] <= BUDGET_SECONDS),
            "within_budget_includes_data_alerts": True}

"""`fedcredit bench rescore`: a portfolio review of N accounts through the batch scoring path.

The same real network as `bench score` (coordinator, bank and three feature nodes as processes
with mutual TLS, a 20,000-SME chain, aligned and trained first). A portfolio of `n_ids`
accounts (every id the parties know, then valid USCC ids nobody knows: refer, unscored, the same
cost on the wire) is booked in the bank's portfolio store and reviewed twice: the first review
makes every pseudonym, the second (as the next scheduled review) reads them from the bank's
cache, as every review of a bank that imports its portfolio with `fedcredit portfolio import`
(which makes the pseudonyms ahead) or runs the decision service (which warms its portfolio's).
`*_scoring_seconds` is the batch scoring inside a review, the rest is monitoring: tiers, lines,
re-credit, PSI and the store's writes; `*_cpu_seconds` the CPU time of every process of the
network on each review (worker pools included), which other work on a shared machine does not
inflate. `within_budget` is the warm review within 60 s. The
plaintext baseline (`plaintext_scoring_seconds`) is the same model evaluated in the clear on the
same ids in the same run, by a party holding every table (which nobody does).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from fedcredit.bench.score import _tree_cpu_seconds, align_and_train, batch_ids
from fedcredit.demo.parties import LABEL_PARTY, party_specs
from fedcredit.evaluate import load_party_tables, plaintext_probabilities
from fedcredit.launcher import LocalNetwork
from fedcredit.synth import synthesize
from node.config import load_node_config
from node.policy import CreditPolicy
from node.portfolio.review import iso, rescore
from node.portfolio.store import Account, PortfolioStore
from node.scoring.bank import BankScorer


def run_rescore_benchmark(n_ids: int, enterprises: int = 20000, seed: int = 11,
                          ) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fedcredit-bench-rescore-") as tmp:
        root = Path(tmp)
        synth = synthesize(root / "data", enterprises=enterprises, seed=seed)
        with LocalNetwork(root, party_specs(synth)) as net:
            align_and_train(net)
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
            pids = [os.getpid(), *(p.pid for p in net.processes.values())]
            try:
                cpu = _tree_cpu_seconds(pids)
                first = rescore(scorer, store, consent="bench-review-1", now=now)
                first_cpu = _tree_cpu_seconds(pids) - cpu
                second = rescore(scorer, store, consent="bench-review-2",
                                 now=now + dt.timedelta(minutes=15))
                second_cpu = _tree_cpu_seconds(pids) - cpu - first_cpu
            finally:
                scorer.close()
                store.close()
            started = time.perf_counter()
            plaintext_probabilities(root / "state", tables, "tr", ids)
            plain_seconds = time.perf_counter() - started
    return {"accounts": n_ids, "known_ids": min(len(known), n_ids),
            "book_seconds": round(book_seconds, 3),
            "review_seconds": first["seconds"], "review_scoring_seconds": first["scoring_seconds"],
            "review_warm_seconds": second["seconds"],
            "review_warm_scoring_seconds": second["scoring_seconds"],
            "review_cpu_seconds": round(first_cpu, 1),
            "review_warm_cpu_seconds": round(second_cpu, 1),
            "cores": os.cpu_count(),
            "scored": first["scored"], "unscored": first["unscored"],
            "alerts": first["alerts"], "score_psi": first["score_psi"],
            "plaintext_scoring_seconds": round(plain_seconds, 3),
            "warm_scoring_ratio": round(second["scoring_seconds"] / max(plain_seconds, 1e-9), 1),
            "budget_seconds": 60.0,
            "within_budget": bool(second["seconds"] <= 60.0)}

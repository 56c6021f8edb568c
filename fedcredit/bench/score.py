"""`fedcredit bench score`: single-enterprise latency and batch throughput of joint scoring.

A real network (coordinator, bank and three feature nodes as processes with mutual TLS) on a
synthetic 20,000-SME chain, aligned and trained first. The batch holds every id the parties know
and, up to `n_ids`, valid USCC ids nobody knows: those cost the same hashing, lookup, encryption,
relay, addition and decryption (their parts are the neutral ones). The plaintext baseline is the
same model evaluated in the clear on the same ids, in the same run. Then the decision service
(`fedcredit decide serve`) under `clients` concurrent HTTP clients for `load_seconds`
(the `service_*` keys: throughput, latency percentiles, errors). Ids travel as pseudonyms the
coordinator evaluates blinded (`crypto.pseudonym`), spread over both sides' process pools;
`batch_seconds` is the first batch, which makes every pseudonym, `batch_warm_seconds` the same
batch again from a new scorer (as tomorrow's run of `fedcredit score --ids`), which reads them
from the bank's pseudonym cache on disk; `batch_pseudonym_*` the first stage of the first batch
alone (making the pseudonyms: three X25519 an id, the physical floor of a cold batch);
`*_cpu_seconds` the CPU time every process of the network (worker pools included) spent on
each, which other work on a shared machine does not inflate. Each id is asked about twice in
the batches, once or not at all as a single, and at most `LOAD_USES` times under load: within
its daily budget.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np

from common.uscc import generate_uscc
from fedcredit.bench.decide_load import decision_service, load_decisions
from fedcredit.demo.parties import FEATURE_PARTIES, LABEL_PARTY, party_specs
from fedcredit.evaluate import load_party_tables, plaintext_probabilities
from fedcredit.launcher import LocalNetwork
from fedcredit.synth import synthesize
from node.config import load_node_config
from node.policy import CreditPolicy
from node.scoring.bank import BankScorer
from proto.fedcredit.v1 import coordinator_pb2

LOAD_USES = 15  # times the load test asks about one id: the batches asked twice, the budget is 20


def _tree_cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by these processes and their live children:
    the bank's and the coordinator's worker pools too (Linux /proc; 0 where there is none)."""
    total, seen, todo = 0.0, set(), list(pids)
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        with suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return total


def align_and_train(net: LocalNetwork) -> None:
    """Start the network, align, and train a small joint LR model (job "tr")."""
    net.start()
    stub = net.stub()
    stub.Align(coordinator_pb2.AlignRequest(label_party=LABEL_PARTY, job_id="al"), timeout=1800)
    stub.Train(coordinator_pb2.TrainRequest(algorithm="vlr", config_json=json.dumps(
        {"label": LABEL_PARTY, "features": list(FEATURE_PARTIES), "align_job": "al",
         "vlr": {"max_epochs": 2, "batch_size": 1024}}), job_id="tr"), timeout=60)
    while stub.GetJob(coordinator_pb2.GetJobRequest(job_id="tr"), timeout=30).state == "running":
        time.sleep(0.5)


def batch_ids(tables: dict[str, Any], n_ids: int, seed: int) -> tuple[list[str], list[str]]:
    """Every id the parties know, and a batch of `n_ids`: the known ones first, then valid
    USCC ids nobody knows."""
    known = sorted({i for t in tables.values() for i in t.ids})
    ids = known[:n_ids]
    if len(ids) < n_ids:
        taken = set(known)
        fill = [i for i in generate_uscc(np.random.default_rng(seed + 1),
                                         n_ids - len(ids) + len(known)) if i not in taken]
        ids += fill[: n_ids - len(ids)]
    return known, ids


def run_score_benchmark(n_ids: int, singles: int = 200, enterprises: int = 20000,
                        seed: int = 11, clients: int = 50, load_seconds: float = 60.0,
                        ) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fedcredit-bench-score-") as tmp:
        root = Path(tmp)
        synth = synthesize(root / "data", enterprises=enterprises, seed=seed)
        with LocalNetwork(root, party_specs(synth)) as net:
            align_and_train(net)
            tables = load_party_tables({p.name: p.data for p in net.parties}, LABEL_PARTY)
            scorer = BankScorer(load_node_config(net.config_path(LABEL_PARTY)), CreditPolicy(),
                                table=tables[LABEL_PARTY])
            try:
                latencies = []
                for ident in tables[LABEL_PARTY].ids[:singles]:
                    started = time.perf_counter()
                    scorer.score([ident], consent="bench-consent")
                    latencies.append((time.perf_counter() - started) * 1e3)
                known, ids = batch_ids(tables, n_ids, seed)
                pids = [os.getpid(), *(p.pid for p in net.processes.values())]
                cpu, started = _tree_cpu_seconds(pids), time.perf_counter()
                scorer.pseudonyms(ids)  # the first stage of the batch, timed on its own
                pseudonym_seconds = time.perf_counter() - started
                pseudonym_cpu = _tree_cpu_seconds(pids) - cpu
                decisions = scorer.score(ids, consent="bench-batch", purpose="benchmark")
                batch_seconds = time.perf_counter() - started
                batch_cpu = _tree_cpu_seconds(pids) - cpu
            finally:
                scorer.close()
            again = BankScorer(load_node_config(net.config_path(LABEL_PARTY)), CreditPolicy(),
                               table=tables[LABEL_PARTY])  # a new process: pseudonyms on disk
            try:
                cpu, started = _tree_cpu_seconds(pids), time.perf_counter()
                again.score(ids, consent="bench-batch-2", purpose="benchmark")
                warm_seconds = time.perf_counter() - started
                warm_cpu = _tree_cpu_seconds(pids) - cpu
            finally:
                again.close()
            with decision_service(net, LABEL_PARTY) as url:  # within each id's daily budget
                load = load_decisions(url, tables[LABEL_PARTY].ids[singles:], clients,
                                      load_seconds, uses=LOAD_USES)
            started = time.perf_counter()
            expected = plaintext_probabilities(root / "state", tables, "tr", ids)
            plain_seconds = time.perf_counter() - started
    got = np.asarray([d.probability for d in decisions])
    return {"ids": n_ids, "p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "p99_ms": round(float(np.percentile(latencies, 99)), 2), "singles": len(latencies),
            "parties": 1 + len(FEATURE_PARTIES), "batch_ids": len(ids),
            "known_ids": min(len(known), n_ids), "batch_seconds": round(batch_seconds, 3),
            "batch_warm_seconds": round(warm_seconds, 3),
            "batch_cpu_seconds": round(batch_cpu, 1), "batch_warm_cpu_seconds": round(warm_cpu, 1),
            "batch_pseudonym_seconds": round(pseudonym_seconds, 3),
            "batch_pseudonym_cpu_seconds": round(pseudonym_cpu, 1),
            "cores": os.cpu_count(),
            "plaintext_batch_seconds": round(plain_seconds, 3),
            "ratio": round(batch_seconds / max(plain_seconds, 1e-9), 1),
            "max_abs_error": float(np.abs(got - expected).max()), **load}

"""Real networks on loopback for integration tests: certificates, small tables, processes."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.uscc import generate_uscc
from coordinator.config import load_coordinator_config
from coordinator.server import build_server
from coordinator.service import Coordinator
from fedcredit.launcher import LocalNetwork, PartySpec
from proto.fedcredit.v1 import coordinator_pb2, coordinator_pb2_grpc
from tests.integration.wiretap import WireTap


@dataclass(frozen=True)
class Tables:
    """Small party tables with known ids, so tests can compare with plaintext set operations."""

    ids: dict[str, list[str]]
    specs: list[PartySpec]


def write_table(path: Path, ids: list[str], columns: dict[str, np.ndarray]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", *columns])
        for i, ident in enumerate(ids):
            writer.writerow([ident, *[f"{col[i]:.6g}" for col in columns.values()]])


def make_tables(folder: Path, seed: int = 3, universe: int = 1200) -> Tables:
    """A bank (label) and two feature holders with partial, different coverage."""
    rng = np.random.default_rng(seed)
    everyone = generate_uscc(rng, universe)
    folder.mkdir(parents=True, exist_ok=True)
    coverage = {"bank": 0.6, "core": 0.7, "logistics": 0.5}
    ids: dict[str, list[str]] = {}
    specs = []
    for name, share in coverage.items():
        picked = sorted(rng.choice(universe, size=int(universe * share), replace=False))
        ids[name] = [everyone[i] for i in picked]
        n = len(picked)
        columns = {f"{name}_x{j}": rng.normal(size=n) for j in range(2)}
        data = {"source": "csv", "path": str(folder / f"{name}.csv"), "id_column": "id"}
        if name == "bank":
            columns["default"] = rng.integers(0, 2, size=n).astype(float)
            data["label_column"] = "default"
        write_table(folder / f"{name}.csv", ids[name], columns)
        specs.append(PartySpec(name=name, role="label" if name == "bank" else "feature",
                               data=data))
    return Tables(ids=ids, specs=specs)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Tables:
    return make_tables(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory, tables: Tables) -> Iterator[LocalNetwork]:
    """Coordinator and three nodes as separate processes, with mutual TLS."""
    net = LocalNetwork(tmp_path_factory.mktemp("net"), tables.specs)
    with net:
        net.start(timeout=120)
        yield net


@contextmanager
def tapped_network(workdir: Path, specs: Sequence[PartySpec],
                   interceptors: Sequence[Any] = (), python: str | None = None,
                   ) -> Iterator[tuple[LocalNetwork, WireTap]]:
    """The coordinator runs in this process with a tap on every call in and out of it (so on
    everything that crosses the wire in a star); the nodes are real processes, started with
    `python` if given (an attack test's curious node). `interceptors` act on the coordinator's
    calls to nodes before the tap sees them (a malicious relay)."""
    net = LocalNetwork(workdir, specs) if python is None else LocalNetwork(workdir, specs,
                                                                           python=python)
    net.prepare()
    tap = WireTap()
    core = Coordinator(load_coordinator_config(net.config_path("coordinator")),
                       client_interceptors=[*interceptors, tap.client_interceptor()])
    server, _ = build_server(core, net.coordinator_address,
                             interceptors=[tap.server_interceptor()])
    server.start()
    try:
        with net:
            for spec in specs:
                net.start_node(spec.name)
            net.wait_serving([s.name for s in specs], timeout=120)
            yield net, tap
    finally:
        server.stop(grace=1).wait()
        core.close()


def stopped(job: coordinator_pb2.JobStatus) -> bool:
    return job.state != "running"


def wait_job(stub: coordinator_pb2_grpc.CoordinatorServiceStub, job_id: str,
             until: Callable[[coordinator_pb2.JobStatus], bool] = stopped, *,
             timeout: float = 300.0) -> coordinator_pb2.JobStatus:
    """Poll a job until `until` holds of it (by default: until it stops running)."""
    deadline = time.monotonic() + timeout
    while not until(job := stub.GetJob(coordinator_pb2.GetJobRequest(job_id=job_id),
                                       timeout=30)):
        assert time.monotonic() < deadline, f"job {job_id} still {job.state}: {job.metrics_json}"
        time.sleep(0.3)
    return job


def submit_job(stub: coordinator_pb2_grpc.CoordinatorServiceStub, job_id: str, algorithm: str,
               settings: dict[str, object], *, features: Sequence[str] = ("host",),
               label: str = "bank", align_job: str = "al", model_name: str | None = None,
               **fields: object) -> coordinator_pb2.JobStatus:
    """Submit a training job: its model named after it unless `model_name` is given ("" lets
    the coordinator name it `<algorithm>-<label>`); `fields` are more of the job's own keys."""
    return stub.Train(coordinator_pb2.TrainRequest(config_json=json.dumps(
        {"label": label, "features": list(features), "align_job": align_job,
         "model_name": job_id if model_name is None else model_name, **fields,
         algorithm: settings}), job_id=job_id, algorithm=algorithm), timeout=60)


def run_job(stub: coordinator_pb2_grpc.CoordinatorServiceStub, job_id: str, algorithm: str,
            settings: dict[str, object], *, features: Sequence[str] = ("host",),
            label: str = "bank", align_job: str = "al", model_name: str | None = None,
            timeout: float = 900.0, **fields: object) -> coordinator_pb2.JobStatus:
    """Submit a training job (as `submit_job`) and wait until it stops running."""
    submit_job(stub, job_id, algorithm, settings, features=features, label=label,
               align_job=align_job, model_name=model_name, **fields)
    return wait_job(stub, job_id, timeout=timeout)

"""What crosses the wire during vertical LR training, and what the coordinator keeps."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tenseal as ts

from crypto.he import unpack_frames
from fedcredit.demo.parties import party_specs
from fedcredit.evaluate import load_party_tables
from fedcredit.launcher import LocalNetwork
from fedcredit.synth import synthesize
from node.alignment import AlignmentStore
from node.datasource import NodeTable
from proto.fedcredit.v1 import common_pb2, coordinator_pb2, node_pb2
from tests.integration.conftest import run_job, tapped_network
from tests.integration.wiretap import WireTap

NODE_TO_NODE = ("plan:", "validation_context:", "positions:", "forward:", "residual:",
                "validation:", "final_validation:", "width:")
TO_OR_FROM_COORDINATOR = {"arbiter_context", "n_batches", "next_epoch", "gradient", "decrypted",
                          "logits", "refreshed", "loss_request", "loss", "reveal", "revealed",
                          "report"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[tuple[LocalNetwork, WireTap, dict[str, NodeTable]]]:
    root = tmp_path_factory.mktemp("privacy-vlr")
    synth = synthesize(root / "data", enterprises=1500, seed=9)
    specs = party_specs(synth)
    with tapped_network(root, specs) as (net, tap):
        stub = net.stub()
        stub.Align(coordinator_pb2.AlignRequest(label_party="bank", mode=node_pb2.PSI_MODE_FULL,
                                                job_id="al"), timeout=300)
        job = run_job(stub, "tr", "vlr",
                      {"batch_size": 256, "max_epochs": 2, "validation_fraction": 0.25},
                      features=["core", "logistics", "tax"], model_name="", timeout=300)
        assert job.state == "done", job.error
        yield net, tap, load_party_tables({s.name: s.data for s in specs}, "bank")


def _step_parts(tap: WireTap) -> list[common_pb2.Part]:
    return [m.part for method, _, m in tap.messages
            if method.endswith("RunStep") and isinstance(m, common_pb2.StepMessage)
            and m.HasField("part")]


def test_node_to_node_payloads_are_sealed(
        trained: tuple[LocalNetwork, WireTap, dict[str, NodeTable]]) -> None:
    _, tap, _ = trained
    parts = _step_parts(tap)
    names = {p.name.split(":")[0] + (":" if ":" in p.name else "") for p in parts}
    assert {"positions:", "forward:", "residual:", "validation:", "gradient"} <= names
    for part in parts:
        if part.name.startswith(NODE_TO_NODE):
            assert part.sealed, part.name
            assert part.sender in {"bank", "core", "logistics", "tax"}
            assert part.recipient in {"bank", "core", "logistics", "tax"}
        else:
            assert part.name in TO_OR_FROM_COORDINATOR, part.name


def test_public_context_carries_no_secret_key(
        trained: tuple[LocalNetwork, WireTap, dict[str, NodeTable]]) -> None:
    _, tap, _ = trained
    contexts = [p.data for p in _step_parts(tap) if p.name == "arbiter_context"]
    whole = b"".join(contexts[: len(contexts) // 4])  # the first open's parts, in order
    assert contexts
    context = ts.context_from(whole)
    assert not context.is_private()


def test_the_coordinator_answers_in_ciphertexts_and_forgets_its_key(
        trained: tuple[LocalNetwork, WireTap, dict[str, NodeTable]]) -> None:
    """Nothing the arbiter sends back is a plaintext: each answer is a fresh CKKS ciphertext
    (the arbiter's masked-value view is attacked in tests/attacks/test_vlr_arbiter.py), and the
    job's secret key is gone from the coordinator's vault once the job is done."""
    net, tap, _ = trained
    answers = [p.data for p in _step_parts(tap)
               if p.name in ("decrypted", "refreshed", "loss", "revealed")]
    assert len(answers) >= 8
    for data in answers:
        frames = unpack_frames(data)
        assert frames[0][:4] == b"CKLR" and all(f[:2] == b"\x5e\xa1" for f in frames[1:])
    vault = net.workdir / "state" / "coordinator" / "vault"
    assert not [p for p in vault.glob("**/*") if p.is_file()]


def test_no_raw_value_label_or_id_on_the_wire(
        trained: tuple[LocalNetwork, WireTap, dict[str, NodeTable]]) -> None:
    net, tap, tables = trained
    # Everything but the arbiter's public keys (35 MB a copy, made by the coordinator itself).
    blob = b"\x00".join(
        m.SerializeToString() for _, _, m in tap.messages
        if not (isinstance(m, common_pb2.StepMessage) and m.part.name == "arbiter_context"))
    rng = np.random.default_rng(0)
    for name, table in tables.items():
        values = np.unique(table.X[np.isfinite(table.X)])
        values = values[values != np.round(values)]  # counts like 1.0 say nothing about anyone
        sample = rng.choice(values, size=min(400, values.size), replace=False)
        # float64 only: a 4-byte float32 pattern turns up by chance in megabytes of ciphertext
        # (about once per 4 GiB/|blob| values), an 8-byte one never does.
        hits = [v for v in sample if np.asarray(v, dtype="<f8").tobytes() in blob]
        assert not hits, f"{name}: raw feature values on the wire, e.g. {hits[:3]}"
        # a random sample: the label-private protocol moves ~50 MB of ciphertext per job, and
        # every id against all of it is minutes of memmem; 150 ids a table finds any systematic leak
        ids = rng.choice(np.asarray(table.ids, dtype=object), size=min(150, len(table.ids)),
                         replace=False)
        assert not [i for i in ids if str(i).encode() in blob]
    bank = tables["bank"]
    assert bank.y is not None
    order = AlignmentStore(net.workdir / "state" / "bank").job_order("al", bank.rows)
    labels = bank.y[order].astype(np.float64)
    for start in range(0, len(labels) - 16, 97):
        run = labels[start:start + 16]
        if 0 < run.sum() < 16:
            assert run.tobytes() not in blob and run.astype("u1").tobytes() not in blob


def test_coordinator_keeps_no_weight_value_or_id(
        trained: tuple[LocalNetwork, WireTap, dict[str, NodeTable]]) -> None:
    net, _, tables = trained
    state = net.workdir / "state" / "coordinator"
    with sqlite3.connect(state / "coordinator.sqlite") as db:
        stored = "\n".join(str(row) for table in ("nodes", "jobs", "models")
                           for row in db.execute(f"SELECT * FROM {table}"))  # noqa: S608
    stored += (state / "audit.jsonl").read_text()
    stored += "".join(p.read_text(errors="replace") for p in Path(net.workdir / "logs").glob("*"))
    assert "weights" not in stored
    assert not [i for t in tables.values() for i in t.ids if i in stored]
    assert not list(state.glob("**/model*.json"))  # no model part lands at the coordinator

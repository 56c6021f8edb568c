"""Issue 12's SecureBoost attacks through real processes (the in-process runs: test_sbt_*.py).

A bank and one feature node ("host", give_credit's 5 host columns) run as real node processes
started through `curious_node` (the bank keeps its decrypted bin sums and its own gradients; the
host keeps only its own columns and bin codes, for scoring); the coordinator runs here behind the
wire tap. Two jobs on a 3,000-row give_credit sample, real BFV: one with GOSS (0.2, 0.1), one
without. Every payload the host received (and every answer it sent) is taken off the wire and
opened with the host's own sealing key from its state directory, then decoded by
`sbt_transcript.feature_view` and attacked with the functions of `sbt_attacks`, as in-process.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from nacl.public import Box, PublicKey

from crypto.he.frames import VECTOR_HEADER, unpack_frames
from crypto.seal import SealingKey, _context_digest
from fedcredit.launcher import PartySpec
from models.protocol import Floors
from models.runtime import LocalRun
from models.sbt import SbtConfig, StepKey, decode_head, decode_ints
from models.sbt.feature import HIST_REQUEST, SPLIT_REQUEST
from node.steps import seal_context
from proto.fedcredit.v1 import common_pb2, coordinator_pb2
from tests.attacks.sbt_attacks import (
    Solved,
    known_label_auc,
    mark,
    membership_inputs,
    node_paths,
    own_inputs,
    sampled_every_tree,
    solve_bins,
)
from tests.attacks.sbt_transcript import DATA, BankView, FeatureView, feature_view
from tests.attacks.vlr_transcript import curious_python
from tests.integration.conftest import run_job, tapped_network
from tests.integration.wiretap import WireTap

ROWS = 3000
KNOWN = 200
HOST = "host"
JOBS = {"goss": {"trees": 3, "depth": 3, "goss": [0.2, 0.1]}, "plain": {"trees": 3, "depth": 3}}
FLOOR = Floors().min_histogram_rows
SEALED_KINDS = ("public_context", "histogram_request", "histograms", "split_request", "partitions",
                "topology")


@dataclass
class Received:
    """What the host read (and answered) in one job, opened with its own key, in wire order."""

    payloads: list[tuple[str, bytes]]
    view: FeatureView
    own: np.ndarray  # its own columns by training position
    codes: np.ndarray  # its bin codes (scores attack 2 only)


@dataclass
class Capture:
    received: dict[str, Received]
    bank: dict[str, BankView]
    labels: np.ndarray
    seconds: float


def _sample(folder: Path, seed: int = 0) -> list[PartySpec]:
    """ROWS rows of give_credit (the rows `sbt_transcript.give_credit(ROWS)` picks), verbatim."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = []
    for name, role, source in (("bank", "label", "guest"), (HOST, "feature", "host")):
        lines = (DATA / f"give_credit_hetero_{source}.csv").read_text().splitlines()
        pick = np.sort(np.random.default_rng(seed).permutation(len(lines) - 1)[:ROWS])
        path = folder / f"{name}.csv"
        path.write_text("\n".join([lines[0], *(lines[1 + i] for i in pick)]) + "\n")
        data = {"source": "csv", "id_format": "any", "path": str(path)}
        if role == "label":
            data["label_column"] = "y"
        specs.append(PartySpec(name, role, data))
    return specs


def _host_payloads(tap: WireTap, key: SealingKey) -> dict[str, list[tuple[str, bytes]]]:
    """Per job, every sealed payload the host received or sent, opened with the host's key.

    Parts are joined by (name, direction); the step header each was sealed under is found by
    trying the RunStep headers seen so far (the seal authenticates its context, so a payload
    opens under its own header only)."""
    headers: list[common_pb2.StepHeader] = []
    peers: dict[str, bytes] = {}
    pending: dict[tuple[str, str, str], list[bytes]] = {}
    out: dict[str, list[tuple[str, bytes]]] = {}
    for method, direction, message in tap.messages:
        if not (method.endswith("RunStep") and isinstance(message, common_pb2.StepMessage)):
            continue
        if message.HasField("header"):
            headers.append(message.header)
            peers.update({p.party: p.sealing_public_key for p in message.header.peers})
            continue
        part = message.part
        incoming = direction == "request" and part.recipient == HOST
        outgoing = direction == "response" and part.sender == HOST
        if not (part.sealed and (incoming or outgoing)):
            continue
        chunks = pending.setdefault((part.name, part.sender, part.recipient), [])
        assert part.index == len(chunks)
        chunks.append(part.data)
        if not part.last:
            continue
        data = b"".join(pending.pop((part.name, part.sender, part.recipient)))
        box = Box(key.private_key, PublicKey(peers[part.recipient if outgoing else part.sender]))
        plain = box.decrypt(data)
        keys = {HOST: key.public_bytes, **peers}
        for header in reversed(headers):
            context = seal_context(header, part.name, part.sender, part.recipient)
            if plain[:32] == _context_digest(context, sender=keys[part.sender],
                                             recipient=keys[part.recipient]):
                out.setdefault(header.job_id, []).append((part.name.split(":")[0], plain[32:]))
                break
        else:
            raise AssertionError(f"no step header opens {part.name}")
    return out


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Capture]:
    if not (DATA / "give_credit_hetero_guest.csv").exists():
        pytest.skip(f"{DATA} is not present")
    root = tmp_path_factory.mktemp("attacks-sbt")
    specs = _sample(root / "data")
    out = root / "curious"
    started = time.monotonic()
    with tapped_network(root, specs, python=curious_python(root, out)) as (net, tap):
        net.stub().Align(coordinator_pb2.AlignRequest(label_party="bank", job_id="al"),
                         timeout=300)
        for job, settings in JOBS.items():
            done = run_job(net.stub(), job, "sbt", settings, features=[HOST], model_name="",
                           timeout=300)
            assert done.state == "done", done.error
        key = SealingKey.load_or_create(net.workdir / "state" / HOST / "sealing.key")
        opened = _host_payloads(tap, key)
    seconds = time.monotonic() - started
    received, bank = {}, {}
    labels = np.zeros(0)
    for job, settings in JOBS.items():
        own = np.load(out / f"{job}.{HOST}.sbt.npz")
        config = SbtConfig.model_validate(settings)
        run = LocalRun(payloads=opened[job])
        received[job] = Received(opened[job], feature_view(run, ROWS, config), own["own"],
                                 own["codes"])
        with (out / f"{job}.bank.sbt.pkl").open("rb") as f:
            kept = pickle.load(f)  # noqa: S301 (written by this test's own bank process)
        bank[job], labels = kept["view"], kept["labels"]
    yield Capture(received, bank, labels, seconds)


def _vectors(frame: bytes) -> int:
    """The number of values an encrypted vector's header states (readable by anyone)."""
    head = unpack_frames(frame)[0]
    return int(VECTOR_HEADER.unpack(head)[1])


def test_requests_carry_one_vector_over_all_rows_never_positions(capture: Capture) -> None:
    for job, got in capture.received.items():
        kinds = [kind for kind, _ in got.payloads]
        assert set(kinds) <= set(SEALED_KINDS), kinds
        assert kinds.count("topology") == JOBS[job]["trees"]
        requests = splits = 0
        for kind, data in got.payloads:
            frames = unpack_frames(data)
            tree, level = (int(v) for v in np.frombuffer(frames[0][4:12], dtype="<u4"))
            if kind == "histogram_request":
                count = decode_head(frames[0], HIST_REQUEST, StepKey(job, tree, level, kind))
                nodes = decode_ints(frames[1], count)  # node ids, then (node, sibling) counts
                counts = decode_ints(frames[2], 2 * count).reshape(count, 2)
                assert (nodes < 2 ** JOBS[job]["depth"]).all() and (counts[:, 0] >= FLOOR).all()
                assert [_vectors(f) for f in frames[3:]] == [ROWS] * count
                requests += count
            elif kind == "split_request":
                count = decode_head(frames[0], SPLIT_REQUEST, StepKey(job, tree, level, kind))
                assert [_vectors(f) for f in frames[2:]] == [ROWS] * count
                splits += count
        assert requests and splits, (requests, splits)  # the host took part in both jobs
        view = got.view
        for table in (view.histogram, view.split, view.left):  # decoded: no position anywhere
            assert all(rows.size == 0 for levels in table for nodes in levels
                       for rows in nodes.values())
        paths = node_paths(view)
        assert all(np.unique(paths[:, j]).size == 1 for j in range(paths.shape[1]))
        print(f"{job}: host received {len(got.payloads)} payloads, {requests} node vectors, "
              f"{splits} split indicators, each over all {ROWS} rows")


def test_ranking_from_traffic_no_better_than_own_columns(capture: Capture) -> None:
    got = capture.received["plain"]
    own = known_label_auc(own_inputs(got.own), capture.labels, KNOWN)
    membership = known_label_auc(membership_inputs(got.view, got.own), capture.labels, KNOWN)
    print(f"known-label AUC: own columns {own:.3f}, + everything received {membership:.3f}")
    assert membership <= own + 0.02


def test_goss_leaves_no_trace(capture: Capture) -> None:
    goss, plain = capture.received["goss"], capture.received["plain"]
    marking = mark(capture.labels, sampled_every_tree(goss.view) == 1.0)
    assert marking.marked == 0 and marking.precision <= marking.base_rate + 0.02

    def roots(got: Received) -> list[tuple[int, list[int]]]:
        """Per tree's root request: the node count and each vector's stated length."""
        found = []
        for kind, data in got.payloads:
            frames = unpack_frames(data)
            if kind == "histogram_request" and frames[0][8:12] == b"\0\0\0\0":
                found.append((len(frames) - 3, [_vectors(f) for f in frames[3:]]))
        return found

    assert roots(goss) == roots(plain) == [(1, [ROWS])] * JOBS["goss"]["trees"]
    sampled = [int(levels[0][0][0]) for levels in goss.view.counts if 0 in levels[0]]
    print(f"GOSS: 0 rows marked (base rate {marking.base_rate:.3f}); roots over all {ROWS} rows; "
          f"sampled counts stated per root {sampled}")


def test_bank_solves_no_bin_beyond_chance(capture: Capture) -> None:
    for job in JOBS:
        results = solve_bins(capture.bank[job], capture.received[job].codes)
        solved = Solved.of(results, FLOOR)
        smallest = min(r.rows for r in results) if results else 0
        print(f"{job}: bank attacked {len(results)} node-columns (smallest {smallest} rows), "
              f"{solved.pairs} pairs, {solved.recovered} claimed, {solved.correct} right, "
              f"chance {solved.chance:.1f}; capture {capture.seconds:.1f} s")
        assert results and solved.pairs
        assert solved.correct <= solved.chance + 2

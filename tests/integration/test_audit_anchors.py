"""Anchored audit, bounded streams, production mode and declared roles through real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from common.tls import TlsFiles, secure_channel
from fedcredit.launcher import LocalNetwork, write_toml
from proto.fedcredit.v1 import coordinator_pb2, coordinator_pb2_grpc, node_pb2
from tests.integration.conftest import Tables, run_job
from tests.unit.crypto.test_anchor import rehash

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
STREAM_LIMIT = 8 * MIB


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "fedcredit.cli.main", *args], env=full,
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tables: Tables) -> Iterator[LocalNetwork]:
    """bank and core (logistics is declared but not started), aligned, one short VLR job."""
    net = LocalNetwork(tmp_path_factory.mktemp("anchors"), tables.specs)
    with net:
        net.prepare()
        net.start_coordinator()
        for name in ("bank", "core"):
            net.start_node(name)
        net.wait_serving(["bank", "core"], timeout=120)
        stub = net.stub()
        stub.Align(coordinator_pb2.AlignRequest(label_party="bank", feature_parties=["core"],
                                                mode=node_pb2.PSI_MODE_FULL, job_id="align"),
                   timeout=300)
        job = run_job(stub, "vlr-1", "vlr",
                      {"batch_size": 128, "max_epochs": 1, "validation_fraction": 0.25},
                      features=["core"], align_job="align", model_name="", timeout=300)
        assert job.state == "done", job.error
        yield net


def _export(net: LocalNetwork, party: str, out: Path) -> None:
    done = cli("audit", "anchors", "--party", party, "--out", str(out), "--coordinator",
               net.coordinator_address, "--pki", str(net.pki_dir), "--json")
    assert done.returncode == 0, done.stderr


def _verify(log: Path, anchors: Path, net: LocalNetwork) -> tuple[int, dict[str, object]]:
    done = cli("audit", "verify", str(log), "--anchors", str(anchors), "--ca",
               str(net.pki_dir / "ca.crt"), "--json")
    return done.returncode, json.loads(done.stdout)


def test_a_cut_or_rewritten_node_log_fails_against_its_anchors(trained: LocalNetwork,
                                                               tmp_path: Path) -> None:
    net = trained
    net.stop_process("bank")  # its shutdown deposits the head after the last entry
    log = net.workdir / "state" / "bank" / "audit.jsonl"
    anchors = tmp_path / "bank-anchors.jsonl"
    _export(net, "bank", anchors)
    entries = log.read_text().splitlines(keepends=True)
    seqs = [json.loads(line)["seq"] for line in anchors.read_text().splitlines()]
    assert seqs[-1] == len(entries) and len(seqs) >= 2  # the alignment, the job, the shutdown
    code, report = _verify(log, anchors, net)
    assert code == 0 and report["ok"], report

    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(entries[:-1]))
    assert cli("audit", "verify", str(cut)).returncode == 0  # the chain alone cannot tell
    code, report = _verify(cut, anchors, net)
    assert code == 50 and report["first_bad"] == len(entries)
    assert "truncated" in str(report["reason"])

    forged = tmp_path / "forged.jsonl"
    forged.write_text("".join(entries))
    edited = seqs[-2]  # an anchored entry: the next anchors no longer match
    rehash(forged, edit_seq=edited)
    assert cli("audit", "verify", str(forged)).returncode == 0
    code, report = _verify(forged, anchors, net)
    assert code == 50 and report["first_bad"] == edited
    assert "rewritten" in str(report["reason"])


def test_the_coordinator_log_verifies_against_the_heads_it_gave_a_node(trained: LocalNetwork,
                                                                       ) -> None:
    net = trained
    received = net.workdir / "state" / "core" / "anchors" / "coordinator.jsonl"
    deadline = time.monotonic() + 30
    while not received.exists():
        assert time.monotonic() < deadline, "the coordinator deposited no anchor with core"
        time.sleep(0.3)
    code, report = _verify(net.workdir / "state" / "coordinator" / "audit.jsonl", received, net)
    assert code == 0 and report["ok"], report


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_a_stream_ten_times_the_limit_is_cut_off_without_buffering(
        trained: LocalNetwork, monkeypatch: pytest.MonkeyPatch) -> None:
    net = trained
    # A fixed mmap threshold: buffers glibc would otherwise keep cached per thread arena go
    # back to the system when freed, so RSS shows what the coordinator holds, not its cache.
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    net.stop_process("coordinator")
    config = net.config_path("coordinator")
    import tomllib

    settings = tomllib.loads(config.read_text())
    settings["limits"] = {"max_stream_bytes": STREAM_LIMIT}
    write_toml(settings, config)
    net.start_coordinator()
    net.wait_serving(["core"], timeout=60)
    pid = net.processes["coordinator"].pid
    files = TlsFiles(ca=net.pki_dir / "ca.crt", cert=net.pki_dir / "bank.crt",
                     key=net.pki_dir / "bank.key")
    stub = coordinator_pb2_grpc.CoordinatorServiceStub(
        secure_channel(net.coordinator_address, files, "coordinator"))
    model = stub.ResolveScoringModel(coordinator_pb2.ResolveScoringModelRequest(bank="bank"),
                                     timeout=30)
    sent: list[int] = []

    def upload(total: int, declared: int) -> Iterator[coordinator_pb2.ScoreSetupUpload]:
        yield coordinator_pb2.ScoreSetupUpload(header=coordinator_pb2.ScoreSetupHeader(
            bank="bank", model_id=model.model_id, model_job=model.model_job,
            context_bytes=declared, model_context_bytes=0))
        piece = bytes(2 * MIB)
        for _ in range(0, total, len(piece)):
            sent.append(len(piece))
            yield coordinator_pb2.ScoreSetupUpload(context=piece)

    # Warm up the handler, TLS buffers and threads with a stream under the limit (refused as
    # cut short), so what follows measures only what a big stream adds.
    with pytest.raises(grpc.RpcError) as short:
        stub.ScoreSetup(upload(4 * MIB, 6 * MIB), timeout=60)
    assert short.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    before = _rss_kib(pid)
    figures = []
    SENT = 20 * STREAM_LIMIT  # noqa: N806 - a figure of this test
    for _ in range(3):
        sent.clear()
        with pytest.raises(grpc.RpcError) as refused:
            stub.ScoreSetup(upload(SENT, 64 * MIB), timeout=60)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_stream_bytes" in (refused.value.details() or "")
        figures.append((_rss_kib(pid), _rss_kib(pid, "VmHWM"), sum(sent)))
    print(f"\ncoordinator RSS before {before} KiB; after each {SENT // MIB} MiB stream (RSS, "
          f"peak, bytes the client handed gRPC): {figures}; limit {STREAM_LIMIT // 1024} KiB")
    for after, _, handed in figures:
        # Nothing of the stream is kept; RSS between calls moves by several MiB on a loaded
        # machine (gRPC core's buffers, heartbeats, the allocator), so the bound is four times
        # the limit: far below the 160 MiB sent, and a kept stream would blow it.
        assert (after - before) * 1024 < 4 * STREAM_LIMIT
        assert handed < SENT // 2  # the client was stopped, not drained
    # At its peak the coordinator held the limit plus a few 2 MiB messages in flight (gRPC's
    # receive buffer, the decoded message, its bytes): never near the 80 MiB it was sent.
    assert (max(peak for _, peak, _ in figures) - before) * 1024 < 6 * STREAM_LIMIT


def test_a_node_registering_in_an_undeclared_role_is_refused(trained: LocalNetwork) -> None:
    net = trained  # [parties] declares logistics = "feature"; it comes up as a label node
    config = net.config_path("logistics")
    import tomllib

    settings = tomllib.loads(config.read_text())
    bank = tomllib.loads(net.config_path("bank").read_text())
    settings.update(role="label", data=bank["data"], coordinator=net.coordinator_address)
    write_toml(settings, config)
    net.start_node("logistics")
    proc = net.processes["logistics"]
    assert proc.wait(timeout=120) == 20
    text = net.children.log_tail("logistics")
    assert "'logistics' registered with role 'label'" in text
    assert "declared it 'feature'" in text


@pytest.mark.parametrize("command", ["coordinator", "node"])
def test_production_mode_refuses_insecure(trained: LocalNetwork, command: str) -> None:
    net = trained
    env = {k: v for k, v in os.environ.items() if k != "FEDCREDIT_PRODUCTION"}
    name = "coordinator" if command == "coordinator" else "core"
    done = subprocess.run([sys.executable, "-m", "fedcredit.cli.main", command, "serve",
                           "--config", str(net.config_path(name)), "--insecure"],
                          env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 20
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "refused in production mode (FEDCREDIT_PRODUCTION=1" in done.stderr
    assert len(lines) <= 2  # one message (rich may wrap it once)

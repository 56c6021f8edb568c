"""Attack: a coordinator that runs the CA swaps a feature node's sealing key at a job's open."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from nacl.exceptions import CryptoError
from nacl.public import Box, PublicKey

from crypto.enrol import certificate_fingerprint, make_request, sign_request
from crypto.seal import PeerKey, SealingKey, sign_sealing_key, verify_peer_key
from fedcredit.launcher import LocalNetwork
from proto.fedcredit.v1 import common_pb2, coordinator_pb2, node_pb2
from tests.integration.conftest import Tables, run_job, tapped_network
from tests.integration.wiretap import WireTap

VICTIM = "core"


class KeySwap(grpc.StreamStreamClientInterceptor):
    """The coordinator's own calls to nodes: once armed, every `peers` entry for VICTIM in a
    step header is replaced by a key the coordinator made (what a relay that runs the CA can do)."""

    def __init__(self) -> None:
        self.forged: common_pb2.PeerKey | None = None
        self.swapped = 0
        self._lock = threading.Lock()

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any,
                                request_iterator: Any) -> Any:
        if details.method.endswith("/RunStep"):
            request_iterator = map(self._swap, request_iterator)
        return continuation(details, request_iterator)

    def _swap(self, message: common_pb2.StepMessage) -> common_pb2.StepMessage:
        if self.forged is None or not message.HasField("header"):
            return message
        peers = message.header.peers
        if not any(p.party == VICTIM for p in peers):
            return message
        changed = common_pb2.StepMessage()
        changed.CopyFrom(message)
        del changed.header.peers[:]
        changed.header.peers.extend(self.forged if p.party == VICTIM else p for p in peers)
        with self._lock:
            self.swapped += 1
        return changed


Attack = tuple[LocalNetwork, WireTap, KeySwap, SealingKey, coordinator_pb2.JobStatus]


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory, tables: Tables) -> Iterator[Attack]:
    root = tmp_path_factory.mktemp("key-swap")
    swap = KeySwap()
    with tapped_network(root, tables.specs, interceptors=[swap]) as (net, tap):
        stub = net.stub()
        stub.Align(coordinator_pb2.AlignRequest(label_party="bank", mode=node_pb2.PSI_MODE_FULL,
                                                job_id="al"), timeout=300)
        # The operator holds the CA key (ca.key in its folder): a fresh key pair, a real
        # certificate in the victim's name, and a sealing key signed with it.
        forge = make_request(VICTIM, root / "forge")
        cert_pem = sign_request(net.pki_dir, forge.csr.read_bytes()).cert_pem
        sealing = SealingKey.generate()
        swap.forged = common_pb2.PeerKey(
            party=VICTIM, cert_pem=cert_pem, sealing_public_key=sealing.public_bytes,
            signature=sign_sealing_key(forge.key.read_bytes(), VICTIM, sealing.public_bytes))
        tap.clear()  # from here on, only the training job's traffic
        job = run_job(stub, "tr", "vlr", {"batch_size": 128, "max_epochs": 1},
                      features=["core", "logistics"], model_name="", timeout=300,
                      step_attempts=1)
        yield net, tap, swap, sealing, job


def test_the_ca_check_alone_would_have_accepted_the_forged_key(attack: Attack) -> None:
    net, _, swap, sealing, _ = attack
    assert swap.forged is not None
    forged = PeerKey(party=VICTIM, cert_pem=swap.forged.cert_pem,
                     sealing_pk=swap.forged.sealing_public_key, signature=swap.forged.signature)

    assert verify_peer_key((net.pki_dir / "ca.crt").read_bytes(), forged) == sealing.public_bytes


def test_the_bank_refuses_to_open_the_job_naming_the_party_and_both_fingerprints(
        attack: Attack) -> None:
    net, _, swap, _, job = attack
    assert swap.forged is not None
    presented = certificate_fingerprint(swap.forged.cert_pem)
    pinned = net.fingerprint(VICTIM)

    assert swap.swapped >= 1  # the attack was made
    assert job.state == "failed"
    assert "bank refused step" in job.error and "PERMISSION_DENIED" in job.error
    assert f"certificate presented for {VICTIM} has fingerprint {presented}" in job.error
    assert f"bank pins {pinned} for {VICTIM}" in job.error


def test_the_refusal_is_in_the_banks_audit_log(attack: Attack) -> None:
    net, _, swap, _, _ = attack
    assert swap.forged is not None
    lines = (net.workdir / "state" / "bank" / "audit.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]

    [refused] = [e for e in entries if e["event"] == "trust.refused"]
    assert refused["job"] == "tr" and refused["peer"] == VICTIM
    assert refused["details"]["presented"] == certificate_fingerprint(swap.forged.cert_pem)
    assert refused["details"]["pinned"] == net.fingerprint(VICTIM)
    assert not [e for e in entries if e["event"] == "train.open" and e["job"] == "tr"]


def test_nothing_on_the_wire_is_sealed_to_a_key_the_coordinator_holds(attack: Attack) -> None:
    net, tap, _, sealing, _ = attack
    senders = {name: PublicKey(SealingKey.load_or_create(
        net.workdir / "state" / name / "sealing.key").public_bytes)
        for name in ("bank", "core", "logistics")}
    sealed = [m.part for _, _, m in tap.messages
              if isinstance(m, common_pb2.StepMessage) and m.HasField("part") and m.part.sealed]

    assert not [p for p in sealed if p.sender == "bank" and p.recipient == VICTIM]
    for part in sealed:
        for public in senders.values():
            with pytest.raises(CryptoError):
                Box(sealing.private_key, public).decrypt(part.data)


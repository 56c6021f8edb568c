"""A node accepts a peer's sealing key only for the certificate it pinned for that party."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from common.errors import DataValidationError, TrustError
from crypto.enrol import certificate_fingerprint, make_request, sign_request
from crypto.pki import init_pki
from crypto.seal import PeerKey, SealingKey, sign_sealing_key
from node.config import NodeConfig, load_node_config
from node.datasource import NodeTable
from node.state import NodeState
from node.trust import TrustConfig


def _node(root: Path, pins: dict[str, str]) -> NodeState:
    pki = root / "pki"
    config = NodeConfig(party="bank", role="label", coordinator="127.0.0.1:1",
                        tls={"ca": pki / "ca.crt", "cert": pki / "bank.crt",
                             "key": pki / "bank.key"},
                        state_dir=root / "bank", trust={"peers": pins},
                        data={"source": "csv", "path": "bank.csv", "label_column": "y"})
    table = NodeTable(ids=["a", "b"], features=["x"], X=np.zeros((2, 1)), y=np.array([0.0, 1.0]),
                      source="test")
    return NodeState(config, table)


def _peer(pki: Path, party: str) -> PeerKey:
    sealing = SealingKey.generate().public_bytes
    return PeerKey(party=party, cert_pem=(pki / f"{party}.crt").read_bytes(), sealing_pk=sealing,
                   signature=sign_sealing_key((pki / f"{party}.key").read_bytes(), party,
                                              sealing))


def _forged(root: Path, party: str) -> PeerKey:
    """What the holder of the CA key can make: a fresh key and a real certificate in `party`'s
    name, and a sealing key signed with it."""
    files = make_request(party, root / "forge")
    cert_pem = sign_request(root / "pki", files.csr.read_bytes()).cert_pem
    sealing = SealingKey.generate().public_bytes
    return PeerKey(party=party, cert_pem=cert_pem, sealing_pk=sealing,
                   signature=sign_sealing_key(files.key.read_bytes(), party, sealing))


def _refusals(state: NodeState) -> list[dict[str, object]]:
    lines = (state.state_dir / "audit.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == "trust.refused"]


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    init_pki(tmp_path / "pki", ["bank", "core", "tax"])
    return tmp_path


def test_a_pinned_peer_is_accepted(root: Path) -> None:
    state = _node(root, {"core": certificate_fingerprint((root / "pki/core.crt").read_bytes())})
    peer = _peer(root / "pki", "core")

    assert state.verify_peer(peer, job="j1") == peer.sealing_pk
    assert _refusals(state) == []


def test_a_certificate_the_ca_issued_but_the_node_did_not_pin_is_refused_and_audited(
        root: Path) -> None:
    pinned = certificate_fingerprint((root / "pki/core.crt").read_bytes())
    state = _node(root, {"core": pinned})
    forged = _forged(root, "core")
    presented = certificate_fingerprint(forged.cert_pem)

    with pytest.raises(TrustError) as caught:
        state.verify_peer(forged, job="j1")

    assert f"certificate presented for core has fingerprint {presented}" in str(caught.value)
    assert f"bank pins {pinned} for core" in str(caught.value)
    [entry] = _refusals(state)
    assert entry["job"] == "j1" and entry["peer"] == "core"
    assert entry["details"]["presented"] == presented  # type: ignore[index]
    assert entry["details"]["pinned"] == pinned  # type: ignore[index]


def test_a_party_without_a_pin_is_refused_naming_what_to_do(root: Path) -> None:
    state = _node(root, {"core": certificate_fingerprint((root / "pki/core.crt").read_bytes())})
    tax = _peer(root / "pki", "tax")

    with pytest.raises(TrustError, match=r"bank has no pinned certificate for tax \(\[trust\] "
                                         r"peers has no entry 'tax'\); presented fingerprint "):
        state.verify_peer(tax)
    assert [e["peer"] for e in _refusals(state)] == ["tax"]


def test_a_pinned_certificate_with_a_swapped_sealing_key_is_still_refused(root: Path) -> None:
    state = _node(root, {"core": certificate_fingerprint((root / "pki/core.crt").read_bytes())})
    real = _peer(root / "pki", "core")
    swapped = PeerKey(party="core", cert_pem=real.cert_pem,
                      sealing_pk=SealingKey.generate().public_bytes, signature=real.signature)

    with pytest.raises(TrustError, match="not signed by core's certificate"):
        state.verify_peer(swapped)
    assert len(_refusals(state)) == 1


def test_a_pinned_certificate_named_for_another_party_is_refused(root: Path) -> None:
    tax = _peer(root / "pki", "tax")
    as_core = PeerKey(party="core", cert_pem=tax.cert_pem, sealing_pk=tax.sealing_pk,
                      signature=tax.signature)
    state = _node(root, {"core": certificate_fingerprint(tax.cert_pem)})

    with pytest.raises(TrustError, match="certificate names 'tax', expected 'core'"):
        state.verify_peer(as_core)


def test_pins_are_validated_and_normalised(tmp_path: Path) -> None:
    digits = "ab" * 32
    assert TrustConfig(peers={"core": digits}).peers["core"] == ":".join(["AB"] * 32)
    with pytest.raises(ValueError, match="SHA-256 certificate fingerprint"):
        TrustConfig(peers={"core": "ab12"})
    with pytest.raises(ValueError, match="invalid party name 'Core'"):
        TrustConfig(peers={"Core": digits})
    path = tmp_path / "bank.toml"
    path.write_text(
        'party = "bank"\nrole = "feature"\ncoordinator = "127.0.0.1:1"\nstate_dir = "s"\n'
        '[tls]\nca = "a"\ncert = "b"\nkey = "c"\n[data]\nsource = "csv"\npath = "x.csv"\n'
        '[trust]\npeers = { core = "zz" }\n')
    with pytest.raises(DataValidationError, match=r"trust\.peers"):
        load_node_config(path)


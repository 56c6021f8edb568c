"""Tests for end-to-end sealing between nodes and the signed sealing keys."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.public import PrivateKey

from common.errors import ProtocolError, TrustError
from crypto.pki import Identity, init_pki, load_identity
from crypto.seal import (
    OVERHEAD,
    PeerKey,
    Sealer,
    SealingKey,
    sign_sealing_key,
    verify_peer_key,
)

CTX = b"job-1/psi/own/0/bank-a->core-1"


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_pki(tmp_path_factory.mktemp("pki"), ["bank-a", "core-1", "tax"]).directory


@pytest.fixture(scope="module")
def other_pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_pki(tmp_path_factory.mktemp("other"), ["bank-a", "core-1"]).directory


def _identity(pki_dir: Path, name: str) -> Identity:
    return load_identity(pki_dir, name)


def _peer_key(identity: Identity, sealing: SealingKey) -> PeerKey:
    signature = sign_sealing_key(identity.key_pem, identity.name, sealing.public_bytes)
    return PeerKey(party=identity.name, cert_pem=identity.cert_pem,
                   sealing_pk=sealing.public_bytes, signature=signature)


def _pair() -> tuple[Sealer, Sealer, SealingKey, SealingKey]:
    alice, bob = SealingKey.generate(), SealingKey.generate()
    to_bob = Sealer(alice.private_key, bob.public_bytes)
    from_alice = Sealer(bob.private_key, alice.public_bytes)
    return to_bob, from_alice, alice, bob


# sealing ----------------------------------------------------------------------------------
@settings(max_examples=25)
@given(plaintext=st.binary(max_size=2048), context=st.binary(max_size=64))
def test_round_trip(plaintext: bytes, context: bytes) -> None:
    to_bob, from_alice = _pair()[:2]

    sealed = to_bob.seal(plaintext, context)

    assert len(sealed) == len(plaintext) + OVERHEAD
    assert from_alice.open(sealed, context) == plaintext


def test_nonce_is_fresh_each_time() -> None:
    to_bob = _pair()[0]

    assert to_bob.seal(b"same", CTX) != to_bob.seal(b"same", CTX)


def test_coordinator_with_its_own_key_cannot_open() -> None:
    to_bob, _, alice, _ = _pair()
    relay = Sealer(PrivateKey.generate(), alice.public_bytes)

    with pytest.raises(ProtocolError, match="failed authentication"):
        relay.open(to_bob.seal(b"secret ids", CTX), CTX)


def test_context_mismatch_is_rejected() -> None:
    to_bob, from_alice = _pair()[:2]
    sealed = to_bob.seal(b"chunk 0", b"job-1/step-1/0")

    for other in (b"job-1/step-1/1", b"job-1/step-2/0", b"job-2/step-1/0", b""):
        with pytest.raises(ProtocolError, match="another context"):
            from_alice.open(sealed, other)


def test_reflected_message_is_rejected() -> None:
    to_bob = _pair()[0]

    with pytest.raises(ProtocolError, match="another context"):
        to_bob.open(to_bob.seal(b"chunk", CTX), CTX)


@pytest.mark.parametrize("position", [0, 30, -1])
def test_tampered_payload_is_rejected(position: int) -> None:
    to_bob, from_alice = _pair()[:2]
    sealed = bytearray(to_bob.seal(b"payload bytes", CTX))
    sealed[position] ^= 0x01

    with pytest.raises(ProtocolError, match="failed authentication"):
        from_alice.open(bytes(sealed), CTX)


def test_truncated_payload_is_rejected() -> None:
    to_bob, from_alice = _pair()[:2]

    with pytest.raises(ProtocolError, match="truncated"):
        from_alice.open(to_bob.seal(b"", CTX)[:-1], CTX)


def test_bad_peer_public_key_is_a_trust_error() -> None:
    with pytest.raises(TrustError, match="unusable peer sealing key"):
        Sealer(PrivateKey.generate(), b"short")


# key storage ------------------------------------------------------------------------------
def test_load_or_create_persists_key_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "state" / "sealing.key"

    created = SealingKey.load_or_create(path)
    loaded = SealingKey.load_or_create(path)

    assert loaded.public_bytes == created.public_bytes
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


def test_load_or_create_rejects_corrupt_key(tmp_path: Path) -> None:
    path = tmp_path / "sealing.key"
    path.write_bytes(b"x" * 7)
    os.chmod(path, 0o600)

    with pytest.raises(TrustError, match="holds 7 bytes"):
        SealingKey.load_or_create(path)


# signed sealing keys ----------------------------------------------------------------------
def test_verify_peer_key_accepts_a_properly_signed_key(pki_dir: Path) -> None:
    sealing = SealingKey.generate()
    peer = _peer_key(_identity(pki_dir, "core-1"), sealing)

    assert verify_peer_key(_identity(pki_dir, "bank-a").ca_pem, peer) == sealing.public_bytes


def test_swapped_sealing_key_is_rejected(pki_dir: Path) -> None:
    peer = _peer_key(_identity(pki_dir, "core-1"), SealingKey.generate())
    swapped = replace(peer, sealing_pk=SealingKey.generate().public_bytes)

    with pytest.raises(TrustError, match="not signed by core-1's certificate"):
        verify_peer_key(_identity(pki_dir, "bank-a").ca_pem, swapped)


def test_key_signed_by_another_node_is_rejected(pki_dir: Path) -> None:
    relay_key = SealingKey.generate()
    tax = _identity(pki_dir, "tax")
    # The relay owns tax's key pair (a colluding node) and signs its own sealing key as core-1.
    forged_sig = sign_sealing_key(tax.key_pem, "core-1", relay_key.public_bytes)
    core = _identity(pki_dir, "core-1")
    forged = PeerKey(party="core-1", cert_pem=core.cert_pem, sealing_pk=relay_key.public_bytes,
                     signature=forged_sig)

    with pytest.raises(TrustError, match="not signed by core-1's certificate"):
        verify_peer_key(core.ca_pem, forged)


def test_key_signed_for_another_party_name_is_rejected(pki_dir: Path) -> None:
    sealing = SealingKey.generate()
    core = _identity(pki_dir, "core-1")
    # core-1's own signature, but made for the name "tax": cannot be presented as core-1's key.
    sig = sign_sealing_key(core.key_pem, "tax", sealing.public_bytes)
    peer = PeerKey(party="core-1", cert_pem=core.cert_pem, sealing_pk=sealing.public_bytes,
                   signature=sig)

    with pytest.raises(TrustError, match="not signed by core-1's certificate"):
        verify_peer_key(core.ca_pem, peer)


def test_certificate_not_matching_party_is_rejected(pki_dir: Path) -> None:
    tax = _identity(pki_dir, "tax")
    peer = replace(_peer_key(tax, SealingKey.generate()), party="core-1")

    with pytest.raises(TrustError, match="certificate names 'tax', expected 'core-1'"):
        verify_peer_key(tax.ca_pem, peer)


def test_certificate_from_another_ca_is_rejected(pki_dir: Path, other_pki_dir: Path) -> None:
    impostor = _peer_key(_identity(other_pki_dir, "core-1"), SealingKey.generate())

    with pytest.raises(TrustError, match="not signed by the network CA"):
        verify_peer_key(_identity(pki_dir, "bank-a").ca_pem, impostor)


def test_end_to_end_between_two_nodes_with_verified_keys(pki_dir: Path) -> None:
    bank, core = _identity(pki_dir, "bank-a"), _identity(pki_dir, "core-1")
    bank_seal, core_seal = SealingKey.generate(), SealingKey.generate()
    core_pk = verify_peer_key(bank.ca_pem, _peer_key(core, core_seal))
    bank_pk = verify_peer_key(core.ca_pem, _peer_key(bank, bank_seal))

    sealed = Sealer(bank_seal.private_key, core_pk).seal(b"blinded points", CTX)

    assert Sealer(core_seal.private_key, bank_pk).open(sealed, CTX) == b"blinded points"

"""Pseudonyms from the coordinator's key on blinded points: same for everyone, blind, bounded."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import ProtocolError
from crypto.pseudonym import (
    MAX_POINTS,
    PseudonymKey,
    blind_ids,
    finish,
    new_blinding,
    pseudonyms_of_points,
    split,
)
from crypto.psi_pool import blind, hash_to_points

IDS = ["91310000000000001X", "91310000000000002Y", "91440300MA5FXXXX1K"]


def _pseudonyms(key: PseudonymKey, ids: list[str]) -> bytes:
    blinding = new_blinding()
    return finish(key.evaluate(blind_ids(ids, blinding)), blinding, len(ids))


def test_every_blinding_gives_the_same_pseudonyms_and_none_of_them_is_seen() -> None:
    key = PseudonymKey(secrets.token_bytes(32))
    first = _pseudonyms(key, IDS)
    assert _pseudonyms(key, IDS) == first == _pseudonyms(key, IDS[:1]) + _pseudonyms(key, IDS[1:])
    assert len(set(split(first))) == 3
    blinding = new_blinding()
    sent = blind_ids(IDS, blinding)
    assert sent != blind_ids(IDS, new_blinding())  # what the coordinator sees: fresh each time
    assert first not in (sent, key.evaluate(sent))


def test_the_key_and_not_the_requester_decides() -> None:
    one, two = PseudonymKey(secrets.token_bytes(32)), PseudonymKey(secrets.token_bytes(32))
    assert set(split(_pseudonyms(one, IDS))).isdisjoint(split(_pseudonyms(two, IDS)))
    assert one.key_id != two.key_id
    # without the key, the hash alone or any other scalar gives nothing that matches
    points = hash_to_points(IDS, "pseudonym/v1")
    guesses = pseudonyms_of_points(points) + pseudonyms_of_points(
        blind(points, secrets.token_bytes(32)))
    assert set(split(guesses)).isdisjoint(split(_pseudonyms(one, IDS)))


@settings(max_examples=40)
@given(st.binary(min_size=32, max_size=32))
def test_unblinding_inverts_any_blinding(seed: bytes) -> None:
    key = PseudonymKey(seed)
    points = hash_to_points(IDS[:1], "pseudonym/v1")
    blinding = new_blinding()
    assert blind(key.evaluate(blind(points, blinding.scalar)), blinding.unblind) == blind(
        points, seed)


def test_the_key_is_kept_private_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym.key"
    key = PseudonymKey.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert PseudonymKey.load_or_create(path).key_id == key.key_id
    assert _pseudonyms(PseudonymKey.load_or_create(path), IDS) == _pseudonyms(key, IDS)


def test_bad_inputs_are_refused() -> None:
    key = PseudonymKey(secrets.token_bytes(32))
    with pytest.raises(ProtocolError, match="whole number"):
        key.evaluate(b"\x01" * 33)
    with pytest.raises(ProtocolError, match="1 to"):
        key.evaluate(b"")
    with pytest.raises(ProtocolError, match=f"1 to {MAX_POINTS}"):
        key.evaluate(hash_to_points(IDS[:1], "x") * (MAX_POINTS + 1))
    with pytest.raises(ProtocolError, match="small order"):
        key.evaluate(bytes(32))
    blinding = new_blinding()
    with pytest.raises(ProtocolError, match="2 ids"):
        finish(key.evaluate(blind_ids(IDS[:1], blinding)), blinding, 2)
    with pytest.raises(ProtocolError, match="whole"):
        split(b"\x00" * 17)

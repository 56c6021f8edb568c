"""ECDH-PSI: group operations, the two roles, the process pool and the benchmark."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import DataValidationError, ProtocolError
from crypto import psi
from crypto.psi import (
    PSI_POINT_BYTES,
    FeaturePsi,
    LabelPsi,
    PsiWorkers,
    blind,
    hash_to_points,
    new_scalar,
    run_psi_benchmark,
    synthetic_ids,
)

P = 2**255 - 19
A = 486662


def _points(blob: bytes) -> list[bytes]:
    return [blob[i:i + PSI_POINT_BYTES] for i in range(0, len(blob), PSI_POINT_BYTES)]


def _on_curve(point: bytes) -> bool:
    u = int.from_bytes(point, "little")
    return u < P and pow(u * (u * (u + A) + 1) % P, (P - 1) // 2, P) == 1


def _run(label: LabelPsi, feature: FeaturePsi) -> list[bytes]:
    """The protocol's message flow; returns every blob that crossed the wire."""
    wire: list[bytes] = []
    for chunk in label.blinded_own():
        doubled = feature.double_blind(chunk)
        wire += [chunk, doubled]
        label.receive_double_blinded(doubled)
    for chunk in feature.blinded_own():
        wire.append(chunk)
        label.receive_peer_blinded(chunk)
    return wire


@pytest.fixture(scope="module")
def pool() -> Iterator[PsiWorkers]:
    with PsiWorkers(2, serial_below=1, task_points=16) as workers:
        yield workers


# group operations -----------------------------------------------------------------------------
def test_hash_to_points_is_deterministic_canonical_and_on_the_curve_not_the_twist() -> None:
    ids = synthetic_ids(0, 64)

    blob = hash_to_points(ids, "job-1")

    assert len(blob) == 64 * PSI_POINT_BYTES
    assert blob == hash_to_points(ids, "job-1")
    assert all(_on_curve(point) for point in _points(blob))
    assert len(set(_points(blob))) == 64


def test_jobs_separate_the_same_id() -> None:
    assert hash_to_points(["913100000000000001"], "job-1") != hash_to_points(
        ["913100000000000001"], "job-2")


def test_length_prefixes_keep_job_and_id_apart() -> None:
    assert hash_to_points(["bc"], "a") != hash_to_points(["c"], "ab")


@settings(max_examples=20)
@given(st.lists(st.text(min_size=1, max_size=24), min_size=1, max_size=8, unique=True))
def test_blinding_commutes(ids: list[str]) -> None:
    points = hash_to_points(ids, "job-c")
    a, b = new_scalar(), new_scalar()

    assert blind(blind(points, a), b) == blind(blind(points, b), a)
    assert blind(points, a) != blind(points, b)


def test_new_scalar_is_fresh_32_bytes() -> None:
    assert len(new_scalar()) == 32
    assert new_scalar() != new_scalar()


@pytest.mark.parametrize("u", [0, 1, P - 1])
def test_small_order_points_are_refused(u: int) -> None:
    good = hash_to_points(["x", "y"], "job")
    blob = good[:PSI_POINT_BYTES] + u.to_bytes(32, "little") + good[PSI_POINT_BYTES:]

    with pytest.raises(ProtocolError, match="point 1 has small order"):
        blind(blob, new_scalar())


def test_blobs_of_partial_points_are_refused() -> None:
    with pytest.raises(ProtocolError, match="whole number"):
        blind(bytes(33), new_scalar())


# roles ----------------------------------------------------------------------------------------
@settings(max_examples=25)
@given(st.sets(st.integers(0, 60), max_size=30), st.sets(st.integers(0, 60), max_size=30))
def test_intersection_equals_plaintext_intersection(own: set[int], theirs: set[int]) -> None:
    label_ids = [f"id-{n}" for n in own]
    feature_ids = [f"id-{n}" for n in theirs]
    label = LabelPsi(label_ids, "job-h")
    feature = FeaturePsi(feature_ids, "job-h")

    _run(label, feature)

    expected = sorted(set(label_ids) & set(feature_ids))
    assert label.intersection() == expected
    assert label.intersection_size() == len(expected)
    assert feature.resolve(label.peer_indices()) == expected


def test_chunked_run_aligns_rows_pairwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psi, "CHUNK_POINTS", 7)
    label_ids = synthetic_ids(0, 50)
    feature_ids = synthetic_ids(30, 40)
    label = LabelPsi(label_ids, "job-k")
    feature = FeaturePsi(feature_ids, "job-k")

    wire = _run(label, feature)

    assert max(len(blob) for blob in wire) == 7 * PSI_POINT_BYTES
    own_rows, peer_positions = label.matches()
    assert list(peer_positions) == sorted(peer_positions)
    feature_rows = feature.resolve_rows(peer_positions)
    assert [label_ids[r] for r in own_rows] == [feature_ids[r] for r in feature_rows]
    assert label.intersection() == synthetic_ids(30, 20)


def test_no_raw_id_or_job_bytes_cross_the_wire() -> None:
    ids = synthetic_ids(0, 40)
    label, feature = LabelPsi(ids, "job-secret"), FeaturePsi(ids[::2], "job-secret")

    wire = _run(label, feature)

    assert wire
    for blob in wire:
        assert b"job-secret" not in blob
        assert not any(identifier.encode() in blob for identifier in ids)
        assert not any(identifier[-6:].encode() in blob for identifier in ids)


def test_blinded_output_is_shuffled() -> None:
    n = 1000
    ids = synthetic_ids(0, n)
    first, second = LabelPsi(ids, "job-s"), LabelPsi(ids, "job-s")
    # the same scalar for both, so only the order can differ
    second._scalar = first._scalar

    in_input_order = _points(blind(hash_to_points(ids, "job-s"), first._scalar))
    sent = _points(b"".join(first.blinded_own()))
    sent_again = _points(b"".join(second.blinded_own()))

    assert sorted(sent) == sorted(in_input_order) == sorted(sent_again)
    position = {point: i for i, point in enumerate(sent)}
    order = np.array([position[point] for point in in_input_order])
    assert np.sum(order == np.arange(n)) < 10  # a random permutation fixes ~1 point
    assert abs(np.corrcoef(order, np.arange(n))[0, 1]) < 0.2
    assert sent != sent_again


def test_invalid_peer_indices_are_refused() -> None:
    feature = FeaturePsi(synthetic_ids(0, 10), "job-i")

    for bad in ([10], [-1], [3, 3], [[1, 2]], [0.5]):
        with pytest.raises(ProtocolError):
            feature.resolve(bad)
    assert feature.resolve([]) == []
    assert feature.resolve(list(range(10))) == synthetic_ids(0, 10)


def test_label_refuses_too_many_too_few_and_repeated_points() -> None:
    ids = synthetic_ids(0, 5)
    label, feature = LabelPsi(ids, "job-r"), FeaturePsi(ids, "job-r")
    own = b"".join(label.blinded_own())
    doubled = feature.double_blind(own)

    with pytest.raises(ProtocolError, match="whole number"):
        label.receive_double_blinded(doubled[:-1])
    label.receive_double_blinded(doubled[:PSI_POINT_BYTES * 4])
    with pytest.raises(ProtocolError, match="returned 4 of the 5"):
        label.matches()
    with pytest.raises(ProtocolError, match="more than"):
        label.receive_double_blinded(doubled[PSI_POINT_BYTES * 3:])
    label.receive_double_blinded(doubled[PSI_POINT_BYTES * 4:])
    theirs = b"".join(feature.blinded_own())
    label.receive_peer_blinded(theirs + theirs[:PSI_POINT_BYTES])
    with pytest.raises(ProtocolError, match="repeat"):
        label.matches()


def test_feature_refuses_small_order_points_from_the_label_node() -> None:
    feature = FeaturePsi(["a"], "job-z")

    with pytest.raises(ProtocolError, match="small order"):
        feature.double_blind(bytes(PSI_POINT_BYTES))


def test_duplicate_own_ids_are_refused() -> None:
    with pytest.raises(DataValidationError, match="duplicate"):
        LabelPsi(["a", "b", "a"], "job-d")


def test_matching_compares_whole_points_and_survives_prefix_clashes() -> None:
    def point(prefix: int, rest: int) -> bytes:
        return prefix.to_bytes(8, "little") + rest.to_bytes(24, "little")

    own = [point(1, 1), point(2, 2), point(3, 3), point(4, 4)]
    peer = [point(9, 9), point(3, 3), point(2, 7), point(1, 1)]  # prefix 2 clashes, no match

    rows, positions = psi._match(b"".join(own), b"".join(peer))
    assert (rows.tolist(), positions.tolist()) == ([2, 0], [1, 3])

    own[3] = point(1, 5)  # two own points share a prefix: the exact path
    rows, positions = psi._match(b"".join(own), b"".join(peer))
    assert (rows.tolist(), positions.tolist()) == ([2, 0], [1, 3])
    assert [a.tolist() for a in psi._match(b"", b"".join(peer))] == [[], []]


# workers --------------------------------------------------------------------------------------
def test_parallel_workers_match_serial(pool: PsiWorkers) -> None:
    ids = synthetic_ids(0, 150)
    scalar = new_scalar()
    serial = blind(hash_to_points(ids, "job-w"), scalar)

    assert pool.hash_and_blind(ids, "job-w", scalar) == serial
    assert b"".join(pool.hash_and_blind_chunks(ids, "job-w", scalar, 40)) == serial
    assert [len(c) for c in pool.hash_and_blind_chunks(ids, "job-w", scalar, 40)] == [
        40 * PSI_POINT_BYTES] * 3 + [30 * PSI_POINT_BYTES]
    points = hash_to_points(ids, "job-w")
    assert pool.blind(points, scalar) == blind(points, scalar)


def test_parallel_workers_report_small_order_points_by_position(pool: PsiWorkers) -> None:
    points = hash_to_points(synthetic_ids(0, 40), "job-w")
    bad = points[:37 * PSI_POINT_BYTES] + bytes(PSI_POINT_BYTES) + points[38 * PSI_POINT_BYTES:]

    with pytest.raises(ProtocolError, match="point 37 has small order"):
        pool.blind(bad, new_scalar())


def test_roles_on_parallel_workers_match_plaintext(pool: PsiWorkers) -> None:
    label_ids, feature_ids = synthetic_ids(0, 90), synthetic_ids(60, 90)
    label = LabelPsi(label_ids, "job-p", pool)
    feature = FeaturePsi(feature_ids, "job-p", pool)

    _run(label, feature)

    assert label.intersection() == feature.resolve(label.peer_indices()) == synthetic_ids(60, 30)


# benchmark ------------------------------------------------------------------------------------
def test_benchmark_reports_and_checks_the_intersection() -> None:
    result = run_psi_benchmark(400, overlap=0.25, workers=1)

    assert result["ids"] == 400
    assert result["intersection"] == 100
    assert result["cores"] == 1
    assert isinstance(result["seconds"], float) and result["seconds"] > 0
    assert result["core_us_per_id"] == pytest.approx(result["seconds"] / 400 * 1e6, abs=2.0)

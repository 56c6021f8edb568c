"""Alignment through real processes: the intersection equals the plaintext set intersection."""

from __future__ import annotations

import numpy as np
import pytest

from fedcredit.launcher import LocalNetwork
from node.alignment import AlignmentStore
from proto.fedcredit.v1 import coordinator_pb2, node_pb2
from tests.integration.conftest import Tables


def _align(network: LocalNetwork, job_id: str, mode: int) -> coordinator_pb2.AlignResponse:
    return network.stub().Align(coordinator_pb2.AlignRequest(
        label_party="bank", mode=mode, job_id=job_id), timeout=300)


def test_intersection_equals_plaintext_and_positions_agree(network: LocalNetwork,
                                                          tables: Tables) -> None:
    reply = _align(network, "job-full", node_pb2.PSI_MODE_FULL)

    bank = tables.ids["bank"]
    sizes = {p.party: p.intersection_size for p in reply.pairs}
    assert sizes == {name: len(set(bank) & set(tables.ids[name]))
                     for name in ("core", "logistics")}
    label_state = AlignmentStore(network.workdir / "state" / "bank")
    for name in ("core", "logistics"):
        feature = AlignmentStore(network.workdir / "state" / name).load_feature("job-full")
        label = label_state.load_label("job-full", name)
        own_ids = [tables.ids[name][r] for r in feature.own_rows]
        # Each feature row sits at the training position of the same enterprise at the bank.
        bank_ids_at_positions = [bank[label.order[p]] for p in feature.positions]
        assert own_ids == bank_ids_at_positions
        assert feature.n_rows == len(bank)
        assert sorted(bank[r] for r in label.peer_rows) == sorted(own_ids)


def test_cardinality_only_feature_node_learns_only_the_size(network: LocalNetwork,
                                                           tables: Tables) -> None:
    reply = _align(network, "job-card", node_pb2.PSI_MODE_CARDINALITY)

    expected = len(set(tables.ids["bank"]) & set(tables.ids["core"]))
    assert {p.party: p.intersection_size for p in reply.pairs}["core"] == expected
    assert not (network.workdir / "state" / "core" / "alignment" / "job-card").exists()


def test_jobs_record_sizes_only(network: LocalNetwork) -> None:
    jobs = network.stub().ListJobs(coordinator_pb2.ListJobsRequest(), timeout=30).jobs
    assert {"job-full", "job-card"} <= {j.job_id for j in jobs}
    assert all(j.state == "done" for j in jobs if j.job_id in ("job-full", "job-card"))


def test_unknown_label_party_is_refused(network: LocalNetwork) -> None:
    import grpc

    with pytest.raises(grpc.RpcError) as err:
        network.stub().Align(coordinator_pb2.AlignRequest(label_party="nobody"), timeout=30)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not a registered label node" in (err.value.details() or "")


def test_nodes_report_health_rows_and_schema(network: LocalNetwork, tables: Tables) -> None:
    nodes = network.stub().ListNodes(coordinator_pb2.ListNodesRequest(), timeout=30).nodes
    by_name = {n.party: n for n in nodes}
    assert set(by_name) == {"bank", "core", "logistics"}
    assert all(n.health == "SERVING" for n in nodes)
    assert by_name["bank"].rows == len(tables.ids["bank"])
    assert [f.name for f in by_name["core"].schema.features] == ["core_x0", "core_x1"]
    assert by_name["bank"].schema.label_column == "default"
    assert np.isclose(by_name["core"].schema.features[0].missing_share, 0.0)

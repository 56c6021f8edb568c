"""Mutual TLS through real processes: who may call whom, and under which name."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from common.tls import TlsFiles, secure_channel
from crypto.pki import init_pki
from fedcredit.connect import coordinator_stub
from fedcredit.launcher import LocalNetwork
from proto.fedcredit.v1 import common_pb2, coordinator_pb2, coordinator_pb2_grpc, node_pb2_grpc


def _files(pki: Path, name: str) -> TlsFiles:
    return TlsFiles(ca=pki / "ca.crt", cert=pki / f"{name}.crt", key=pki / f"{name}.key")


def _stub_as(network: LocalNetwork, pki: Path,
             name: str) -> coordinator_pb2_grpc.CoordinatorServiceStub:
    channel = secure_channel(network.coordinator_address, _files(pki, name), "coordinator")
    return coordinator_pb2_grpc.CoordinatorServiceStub(channel)


def _endpoint(network: LocalNetwork, party: str) -> str:
    nodes = network.stub().ListNodes(coordinator_pb2.ListNodesRequest(), timeout=30).nodes
    return next(n.endpoint for n in nodes if n.party == party)


def test_certificate_from_another_ca_is_refused(network: LocalNetwork, tmp_path: Path) -> None:
    rogue = tmp_path / "rogue-pki"
    init_pki(rogue, ["bank"])
    stub = coordinator_stub(network.coordinator_address, rogue, "operator")

    with pytest.raises(grpc.RpcError) as err:
        stub.ListNodes(coordinator_pb2.ListNodesRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_node_refuses_a_client_certificate_from_another_ca(network: LocalNetwork,
                                                          tmp_path: Path) -> None:
    rogue = tmp_path / "rogue-pki"
    init_pki(rogue, ["x"])
    # A rogue CA's "coordinator" certificate: right name, wrong issuer.
    files = TlsFiles(ca=network.pki_dir / "ca.crt", cert=rogue / "coordinator.crt",
                     key=rogue / "coordinator.key")
    channel = secure_channel(_endpoint(network, "bank"), files, "bank")
    with pytest.raises(grpc.RpcError) as err:
        node_pb2_grpc.NodeServiceStub(channel).Describe(common_pb2.NodeInfo(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_valid_certificate_under_another_partys_name_is_refused(network: LocalNetwork) -> None:
    stub = _stub_as(network, network.pki_dir, "core")
    info = common_pb2.NodeInfo(party="bank", role=common_pb2.ROLE_LABEL,
                               key=common_pb2.PeerKey(party="bank"))
    request = coordinator_pb2.RegisterNodeRequest(endpoint="127.0.0.1:1", info=info)

    with pytest.raises(grpc.RpcError) as err:
        stub.RegisterNode(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "cannot register party 'bank'" in (err.value.details() or "")
    nodes = network.stub().ListNodes(coordinator_pb2.ListNodesRequest(), timeout=30).nodes
    bank = next(n for n in nodes if n.party == "bank")
    assert bank.endpoint != "127.0.0.1:1"  # the real bank's record is untouched


def test_node_accepts_calls_only_from_the_coordinator(network: LocalNetwork) -> None:
    channel = secure_channel(_endpoint(network, "bank"), _files(network.pki_dir, "operator"),
                             "bank")
    with pytest.raises(grpc.RpcError) as err:
        node_pb2_grpc.NodeServiceStub(channel).Describe(common_pb2.NodeInfo(), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_node_cannot_run_operator_calls(network: LocalNetwork) -> None:
    stub = _stub_as(network, network.pki_dir, "bank")
    with pytest.raises(grpc.RpcError) as err:
        stub.Align(coordinator_pb2.AlignRequest(label_party="bank"), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_channel_to_a_node_is_pinned_to_its_party_name(network: LocalNetwork) -> None:
    # Dial the bank's address while expecting the core's certificate: the handshake fails.
    channel = secure_channel(_endpoint(network, "bank"), _files(network.pki_dir, "coordinator"),
                             "core")
    with pytest.raises(grpc.RpcError) as err:
        node_pb2_grpc.NodeServiceStub(channel).Describe(common_pb2.NodeInfo(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE

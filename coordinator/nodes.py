"""Channels from the coordinator to registered nodes, each pinned to the node's party name."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.tls import TlsFiles, secure_channel
from coordinator.store import NodeRecord
from proto.fedcredit.v1 import common_pb2, node_pb2_grpc

HEALTH_DEADLINE_S = 3.0


class NodeClient:
    """One registered node: its record, a channel that only accepts its certificate, stubs."""

    def __init__(self, record: NodeRecord, channel: grpc.Channel) -> None:
        self.record = record
        self.party = record.party
        self.channel = channel
        self.stub = node_pb2_grpc.NodeServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)

    @property
    def peer_key(self) -> common_pb2.PeerKey:
        """The node's signed sealing key, as the node itself registered it."""
        r = self.record
        return common_pb2.PeerKey(party=r.party, cert_pem=r.cert_pem,
                                  sealing_public_key=r.sealing_public_key, signature=r.signature)

    def health_status(self) -> str:
        try:
            reply = self.health.Check(health_pb2.HealthCheckRequest(service=""),
                                      timeout=HEALTH_DEADLINE_S)
        except grpc.RpcError:
            return "UNREACHABLE"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


class NodeClients:
    """Cached channels to nodes; a re-registered endpoint gets a fresh channel."""

    def __init__(self, tls: TlsFiles | None,
                 interceptors: Sequence[grpc.UnaryUnaryClientInterceptor] = ()) -> None:
        self._tls = tls
        self._interceptors = list(interceptors)
        self._clients: dict[str, NodeClient] = {}
        self._lock = threading.Lock()

    def get(self, record: NodeRecord) -> NodeClient:
        with self._lock:
            client = self._clients.get(record.party)
            if client is not None and client.record == record:
                return client
            if client is not None:
                client.channel.close()
            channel = secure_channel(record.endpoint, self._tls, record.party)
            if self._interceptors:
                channel = grpc.intercept_channel(channel, *self._interceptors)
            client = NodeClient(record, channel)
            self._clients[record.party] = client
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.channel.close()
            self._clients.clear()

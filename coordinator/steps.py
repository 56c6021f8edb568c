"""Declared steps over gRPC: one call per node (retried with backoff); a job as a network."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import grpc

from common.bounded import bounded
from common.errors import FedcreditError, PeerUnavailable, ProtocolError
from common.limits import WireLimits
from common.parts import Payload, from_parts, write_step
from common.rpc import RETRYABLE
from coordinator.nodes import NodeClient
from models.protocol import Algorithm, JobSpec, Role, Step
from proto.fedcredit.v1 import common_pb2

log = logging.getLogger(__name__)




def call_step(client: NodeClient, header: common_pb2.StepHeader, payloads: Sequence[Payload],
              *, deadline_s: float, attempts: int = 3, backoff_s: float = 1.0,
              limits: WireLimits | None = None) -> dict[str, Payload]:
    """Run a step at a node. A retry carries the same idempotency key, so it is applied once.
    The node's reply is held to `limits` (count, bytes) before it is buffered."""
    limits = limits or WireLimits()
    last: grpc.RpcError | None = None
    for attempt in range(attempts):
        try:
            replies = client.stub.RunStep(write_step(payloads, header), timeout=deadline_s)
            what = f"{client.party}'s reply to step {header.step}"
            return from_parts((m.part for m in bounded(replies, limits, what)),
                              max_bytes=limits.max_step_bytes, max_parts=limits.max_step_parts)
        except grpc.RpcError as err:
            if err.code() not in RETRYABLE:
                raise ProtocolError(f"{client.party} refused step {header.step} "
                                    f"(epoch {header.epoch}, batch {header.batch}): "
                                    f"{err.code().name}: {err.details()}") from err
            last = err
            log.warning("job %s: %s did not answer step %s (attempt %d/%d): %s", header.job_id,
                        client.party, header.step, attempt + 1, attempts, err.code().name)
            time.sleep(backoff_s * 2**attempt)
    assert last is not None
    raise PeerUnavailable(f"{client.party} did not answer step {header.step} of epoch "
                          f"{header.epoch} after {attempts} attempts: {last.code().name}")


class JobCancelled(FedcreditError):
    """The operator cancelled the job; it stopped before its next step."""


class Peer(Protocol):
    """A job's party as the network needs it: its name and its signed sealing key."""

    @property
    def party(self) -> str: ...

    @property
    def peer_key(self) -> common_pb2.PeerKey: ...


Send = Callable[[str, common_pb2.StepHeader, Sequence[Payload]], dict[str, Payload]]


class NodeNetwork:
    """The parties of one job as nodes: runs declared steps through `send`, in parallel.

    It relays what the driver hands it; sealed payloads stay opaque. `open` steps carry the job
    description and the peers' signed sealing keys (the label node gets every feature node's,
    a feature node the label node's, and the other feature nodes' only when the job's settings
    have them send each other parts, `Algorithm.feature_peers`). `send` is a gRPC call in
    production (`grpc_send`).
    `cancelled` is asked before each step: once it says so, the job stops with JobCancelled.
    """

    def __init__(self, algorithm: Algorithm, job_id: str, spec: JobSpec, label: Peer,
                 features: Sequence[Peer], send: Send,
                 cancelled: Callable[[], bool] | None = None,
                 vault: MutableMapping[str, bytes] | None = None) -> None:
        self.algorithm, self.job_id, self.spec, self.send = algorithm, job_id, spec, send
        self.vault: MutableMapping[str, bytes] = vault if vault is not None else {}
        self.cancelled = cancelled
        self.label = label.party
        self.features = tuple(f.party for f in features)
        self._label, self._feature_peers = label, list(features)
        self._peers_among_features = algorithm.feature_peers(
            algorithm.settings.model_validate(spec.settings))
        self.pool = ThreadPoolExecutor(max_workers=max(2, len(features) + 1))

    def _header(self, step: Step, epoch: int, batch: int, extra: Mapping[str, Any] | None,
                party: str) -> common_pb2.StepHeader:
        config: dict[str, Any] = dict(extra or {})
        peers: list[common_pb2.PeerKey] = []
        if step.opens:
            config = self.spec.model_copy(update={"resume": bool(config.get("resume"))}
                                          ).model_dump(mode="json")
            peers = ([f.peer_key for f in self._feature_peers] if step.role == "label"
                     else [self._label.peer_key])
            if step.role == "feature" and self._peers_among_features:  # they seal to each other
                peers += [f.peer_key for f in self._feature_peers if f.party != party]
        return common_pb2.StepHeader(
            job_id=self.job_id, algorithm=self.algorithm.name, step=step.name, epoch=epoch,
            batch=batch, key=f"{self.job_id}/{epoch}/{batch}/{step.name}",
            config_json=json.dumps(config), peers=peers)

    def run(self, step: str, epoch: int = 0, batch: int = 0,
            parts: Sequence[Payload] = (), *, extra: Mapping[str, Any] | None = None,
            at: Sequence[str] | None = None) -> dict[str, dict[str, Payload]]:
        if self.cancelled is not None and self.cancelled():  # a step boundary: stop here
            raise JobCancelled(f"job {self.job_id} cancelled before step {step} "
                               f"({self.algorithm.unit} {epoch})")
        roles = self.algorithm.role_of(step)
        futures = {}
        for party in (self.label, *self.features):
            role: Role = "label" if party == self.label else "feature"
            if role not in roles or (at is not None and party not in at):
                continue
            header = self._header(self.algorithm.step(step, role), epoch, batch, extra, party)
            given = [p for p in parts if not p.recipient or p.recipient == party]
            futures[party] = self.pool.submit(self.send, party, header, given)
        return {party: future.result() for party, future in futures.items()}

    def close(self) -> None:
        self.pool.shutdown(wait=False)


def grpc_send(clients: Sequence[NodeClient], *, deadline_s: float, attempts: int,
              limits: WireLimits | None = None) -> Send:
    """`send` over gRPC to registered nodes, each call retried with backoff."""
    by_party = {c.party: c for c in clients}

    def send(party: str, header: common_pb2.StepHeader,
             payloads: Sequence[Payload]) -> dict[str, Payload]:
        return call_step(by_party[party], header, payloads, deadline_s=deadline_s,
                         attempts=attempts, limits=limits)

    return send

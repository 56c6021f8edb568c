"""Call one step on a node: header and named parts out, named parts back; retried with backoff."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from pydantic import BaseModel, Field

from common.errors import PeerUnavailable, ProtocolError
from common.parts import Payload, from_parts, write_step
from coordinator.nodes import NodeClient
from proto.fedcredit.v1 import common_pb2

log = logging.getLogger(__name__)

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def call_step(client: NodeClient, header: common_pb2.StepHeader, payloads: Sequence[Payload],
              *, deadline_s: float, attempts: int = 3, backoff_s: float = 1.0,
              ) -> dict[str, Payload]:
    """Run a step at a node. A retry carries the same idempotency key, so it is applied once."""
    last: grpc.RpcError | None = None
    for attempt in range(attempts):
        try:
            replies = client.stub.RunStep(write_step(payloads, header), timeout=deadline_s)
            return from_parts(m.part for m in replies)
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


class JobDriver:
    """Drives one algorithm's steps on the label node and the feature nodes of a job."""

    algorithm = ""

    def __init__(self, job_id: str, label: NodeClient, features: list[NodeClient], *,
                 deadline_s: float, attempts: int) -> None:
        self.job_id = job_id
        self.label = label
        self.features = features
        self.deadline_s = deadline_s
        self.attempts = attempts
        self.pool = ThreadPoolExecutor(max_workers=max(2, len(features) + 1))

    def _header(self, step: str, epoch: int = 0, batch: int = 0,
                extra: dict[str, Any] | None = None,
                peers: list[common_pb2.PeerKey] | None = None) -> common_pb2.StepHeader:
        return common_pb2.StepHeader(
            job_id=self.job_id, algorithm=self.algorithm, step=step, epoch=epoch, batch=batch,
            key=f"{self.job_id}/{epoch}/{batch}/{step}",
            config_json=json.dumps(extra or {}), peers=peers or [])

    def _call(self, client: NodeClient, header: common_pb2.StepHeader,
              payloads: list[Payload] | None = None) -> dict[str, Payload]:
        return call_step(client, header, payloads or [], deadline_s=self.deadline_s,
                         attempts=self.attempts)

    def _each(self, calls: list[tuple[NodeClient, common_pb2.StepHeader, list[Payload]]],
              ) -> list[dict[str, Payload]]:
        futures = [self.pool.submit(self._call, c, h, p) for c, h, p in calls]
        return [f.result() for f in futures]

    def close(self) -> None:
        self.pool.shutdown(wait=False)


class TrainingJobConfig(BaseModel):
    """What every training job names: parties, the alignment it trains on, step budgets."""

    model_config = {"extra": "forbid"}

    label: str
    features: list[str] = Field(min_length=1)
    align_job: str
    model_name: str = ""
    step_deadline_seconds: float = 300.0
    step_attempts: int = 3

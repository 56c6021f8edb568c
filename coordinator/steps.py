"""Call one step on a node: header and named parts out, named parts back; retried with backoff."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import grpc

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

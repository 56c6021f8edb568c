"""Drive ECDH-PSI between the label node and each feature node, relaying sealed chunks."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc

from common.bounded import bounded
from common.errors import PeerUnavailable, ProtocolError
from common.limits import WireLimits
from common.rpc import RETRYABLE
from coordinator.nodes import NodeClient
from proto.fedcredit.v1 import common_pb2, node_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairResult:
    """What the coordinator learns of one alignment: sizes and time, nothing else."""

    party: str
    label_rows: int
    party_rows: int
    intersection_size: int
    seconds: float


_END = object()


def align_pair(label: NodeClient, feature: NodeClient, job_id: str,
               mode: node_pb2.PsiMode.ValueType,
               deadline_s: float, limits: WireLimits | None = None) -> PairResult:
    """Run one PSI session; the coordinator sees sealed bytes and the sizes only. Every stream
    a node sends back is held to `limits` before it is buffered."""
    start = time.perf_counter()
    try:
        return _align_pair(label, feature, job_id, mode, deadline_s, start,
                           limits or WireLimits())
    except grpc.RpcError as err:
        party = label.party if err.code() == grpc.StatusCode.UNAVAILABLE else "a node"
        if err.code() in RETRYABLE:
            raise PeerUnavailable(f"alignment {label.party}/{feature.party}: {party} did not "
                                  f"answer: {err.details()}") from err
        raise ProtocolError(f"alignment {label.party}/{feature.party} failed: "
                            f"{err.code().name}: {err.details()}") from err


def _align_pair(label: NodeClient, feature: NodeClient, job_id: str,
                mode: node_pb2.PsiMode.ValueType,
                deadline_s: float, start: float, limits: WireLimits) -> PairResult:
    # 1. Both nodes hash and blind their own ids at the same time.
    with ThreadPoolExecutor(max_workers=2) as pool:
        label_own = pool.submit(lambda: list(bounded(label.stub.PsiBlindOwn(
            node_pb2.PsiBlindOwnRequest(job_id=job_id, peer=feature.peer_key, mode=mode),
            timeout=deadline_s), limits, f"{label.party}'s blinded ids")))
        feature_own = pool.submit(lambda: list(bounded(feature.stub.PsiBlindOwn(
            node_pb2.PsiBlindOwnRequest(job_id=job_id, peer=label.peer_key, mode=mode),
            timeout=deadline_s), limits, f"{feature.party}'s blinded ids")))
        label_chunks, feature_chunks = label_own.result(), feature_own.result()

    # 2. The feature node blinds the label node's points again while the label node blinds
    #    the feature node's points: both cores stay busy.
    doubled: queue.Queue[object] = queue.Queue(maxsize=8)
    failure: list[BaseException] = []

    def run_double_blind() -> None:
        try:
            replies = feature.stub.PsiDoubleBlind(iter(label_chunks), timeout=deadline_s)
            for chunk in bounded(replies, limits, f"{feature.party}'s double-blinded ids"):
                doubled.put(chunk)
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(err)
        finally:
            doubled.put(_END)

    worker = threading.Thread(target=run_double_blind, name=f"psi-{feature.party}", daemon=True)
    worker.start()

    def intersect_requests() -> Iterator[common_pb2.SealedChunk]:
        yield from feature_chunks
        while (item := doubled.get()) is not _END:
            assert isinstance(item, common_pb2.SealedChunk)
            yield item

    replies: list[common_pb2.SealedChunk] = []
    summary: node_pb2.PsiSummary | None = None
    try:
        for reply in bounded(label.stub.PsiIntersect(intersect_requests(), timeout=deadline_s),
                             limits, f"{label.party}'s intersection"):
            if reply.HasField("chunk"):
                replies.append(reply.chunk)
            else:
                summary = reply.summary
    finally:
        worker.join()
    if failure:
        raise failure[0]
    if summary is None:
        raise ProtocolError(f"label node {label.party} ended the intersection without a summary")

    # 3. The feature node stores the alignment (or, cardinality-only, learns the size).
    header = node_pb2.PsiAcceptHeader(job_id=job_id, peer=label.party, mode=mode,
                                      intersection_size=summary.intersection_size)
    accept_requests = [node_pb2.PsiAcceptRequest(header=header)]
    accept_requests += [node_pb2.PsiAcceptRequest(chunk=c) for c in replies]
    accepted = feature.stub.PsiAccept(iter(accept_requests), timeout=deadline_s)
    if accepted.intersection_size != summary.intersection_size:
        raise ProtocolError(f"{feature.party} stored {accepted.intersection_size} matches, "
                            f"{label.party} found {summary.intersection_size}")
    seconds = time.perf_counter() - start
    log.info("job %s: %s/%s intersection %d in %.2fs", job_id, label.party, feature.party,
             summary.intersection_size, seconds)
    return PairResult(party=feature.party, label_rows=summary.own_rows,
                      party_rows=accepted.own_rows,
                      intersection_size=summary.intersection_size, seconds=seconds)

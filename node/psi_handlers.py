"""Node side of ECDH-PSI (DESIGN §3.1): unseal, call the crypto engine, seal, store results."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import numpy as np

from common.errors import LimitExceeded, ProtocolError
from common.limits import MAX_PSI_CHUNKS
from crypto.psi import FeaturePsi, LabelPsi
from node.alignment import FeatureAlignment, check_job_id
from node.state import NodeState, PsiSession
from proto.fedcredit.v1 import common_pb2, node_pb2

log = logging.getLogger(__name__)

OWN = common_pb2.CHUNK_KIND_OWN_BLINDED
DOUBLE = common_pb2.CHUNK_KIND_DOUBLE_BLINDED
RESULT = common_pb2.CHUNK_KIND_RESULT
_PAIR = np.dtype("<u8")


def seal_context(job_id: str, kind: int, index: int, sender: str, recipient: str) -> bytes:
    """What a sealed chunk is bound to, so a relay cannot replay it elsewhere."""
    return f"psi|{job_id}|{kind}|{index}|{sender}>{recipient}".encode()


def _peer_key_from_wire(peer: common_pb2.PeerKey) -> object:
    from crypto.seal import PeerKey

    return PeerKey(party=peer.party, cert_pem=peer.cert_pem, sealing_pk=peer.sealing_public_key,
                   signature=peer.signature)


def blind_own(request: node_pb2.PsiBlindOwnRequest,
              state: NodeState) -> Iterator[common_pb2.SealedChunk]:
    """Open a session with the peer and stream this node's own blinded ids, sealed to it."""
    job_id = check_job_id(request.job_id)
    if request.mode not in (node_pb2.PSI_MODE_FULL, node_pb2.PSI_MODE_CARDINALITY):
        raise ProtocolError("PSI mode must be FULL or CARDINALITY")
    peer_public = state.verify_peer(_peer_key_from_wire(request.peer),  # type: ignore[arg-type]
                                    job=job_id)
    engine: LabelPsi | FeaturePsi
    snapshot = state.snapshot()  # the whole alignment uses this one, whatever loads meanwhile
    table = snapshot.training  # a bank aligns its labelled rows only: applicants not trained on
    if state.role == "label":
        engine = LabelPsi(table.ids, job_id, state.workers)
    else:
        engine = FeaturePsi(table.ids, job_id, state.workers)
    session = PsiSession(job_id=job_id, peer=request.peer.party, mode=request.mode, engine=engine,
                         sealer=state.sealer_for(peer_public), snapshot=snapshot)
    state.put_session(session)
    state.audit.append("psi.start", job=job_id, peer=session.peer, purpose="alignment",
                       rows=table.rows)
    for index, blob in enumerate(engine.blinded_own()):
        context = seal_context(job_id, OWN, index, state.party, session.peer)
        session.sent_chunks = index + 1
        yield common_pb2.SealedChunk(job_id=job_id, kind=OWN, index=index, sender=state.party,
                                     payload=session.sealer.seal(blob, context))


def _capped(received: int) -> None:
    """Refuse a PSI stream past its chunk cap before reading on (each chunk is size-limited)."""
    if received >= MAX_PSI_CHUNKS:
        raise LimitExceeded(f"PSI stream of more than {MAX_PSI_CHUNKS} chunks refused")


def _open(chunk: common_pb2.SealedChunk, session: PsiSession, state: NodeState) -> bytes:
    if chunk.sender != session.peer:
        raise ProtocolError(f"chunk from {chunk.sender!r} in a session with {session.peer!r}")
    context = seal_context(chunk.job_id, chunk.kind, chunk.index, session.peer, state.party)
    return session.sealer.open(chunk.payload, context)


def double_blind(chunks: Iterable[common_pb2.SealedChunk],
                 state: NodeState) -> Iterator[common_pb2.SealedChunk]:
    """Feature node: blind the label node's points again, chunk by chunk, in the same order."""
    if state.role != "feature":
        raise ProtocolError("only a feature node blinds a peer's points twice")
    session: PsiSession | None = None
    for expected, chunk in enumerate(chunks):
        if session is None:
            session = state.session(check_job_id(chunk.job_id), chunk.sender)
        _capped(expected)
        if chunk.kind != OWN or chunk.index != expected:
            raise ProtocolError(f"expected own-blinded chunk {expected}, got kind {chunk.kind} "
                                f"index {chunk.index}")
        blob = session.engine.double_blind(_open(chunk, session, state))
        context = seal_context(chunk.job_id, DOUBLE, chunk.index, state.party, session.peer)
        yield common_pb2.SealedChunk(job_id=chunk.job_id, kind=DOUBLE, index=chunk.index,
                                     sender=state.party,
                                     payload=session.sealer.seal(blob, context))


def intersect(chunks: Iterable[common_pb2.SealedChunk],
              state: NodeState) -> Iterator[node_pb2.PsiIntersectReply]:
    """Label node: take the peer's blinded ids and our double-blinded ones, match, reply."""
    if state.role != "label":
        raise ProtocolError("only the label node computes the intersection")
    session: PsiSession | None = None
    next_index = {OWN: 0, DOUBLE: 0}
    for chunk in chunks:
        if session is None:
            session = state.session(check_job_id(chunk.job_id), chunk.sender)
        _capped(sum(next_index.values()))
        if chunk.kind not in next_index or chunk.index != next_index[chunk.kind]:
            raise ProtocolError(f"unexpected chunk kind {chunk.kind} index {chunk.index}")
        next_index[chunk.kind] += 1
        payload = _open(chunk, session, state)
        if chunk.kind == DOUBLE:
            session.engine.receive_double_blinded(payload)
        else:
            session.engine.receive_peer_blinded(payload)
    if session is None:
        raise ProtocolError("empty intersection stream")
    if next_index[DOUBLE] != session.sent_chunks:
        raise ProtocolError(f"received {next_index[DOUBLE]} double-blinded chunks, "
                            f"sent {session.sent_chunks}")
    own_rows, peer_indices = session.engine.matches()
    table = session.snapshot.training
    state.alignments.save_fingerprint(session.job_id, table.ids, session.snapshot.version)
    order = state.alignments.job_order(session.job_id, table.rows)
    state.alignments.save_label(session.job_id, session.peer, np.sort(own_rows))
    size = len(own_rows)
    if session.mode == node_pb2.PSI_MODE_FULL:
        position_of_row = np.empty(len(order), dtype=np.int64)
        position_of_row[order] = np.arange(len(order), dtype=np.int64)
        pairs = np.stack([peer_indices, position_of_row[own_rows]], axis=1).astype(_PAIR)
        for index, blob in enumerate(_result_blobs(pairs, table.rows)):
            context = seal_context(session.job_id, RESULT, index, state.party, session.peer)
            chunk = common_pb2.SealedChunk(job_id=session.job_id, kind=RESULT, index=index,
                                           sender=state.party,
                                           payload=session.sealer.seal(blob, context))
            yield node_pb2.PsiIntersectReply(chunk=chunk)
    state.audit.append("psi.intersect", job=session.job_id, peer=session.peer,
                       purpose="alignment", rows=size)
    state.end_session(session.job_id, session.peer)
    state.anchors.deposit_soon()
    log.info("job %s: intersection with %s has %d rows", session.job_id, session.peer, size)
    yield node_pb2.PsiIntersectReply(summary=node_pb2.PsiSummary(
        job_id=session.job_id, peer=session.peer, own_rows=table.rows,
        intersection_size=size))


RESULT_PAIRS_PER_CHUNK = 65536


def _result_blobs(pairs: np.ndarray, n_rows: int) -> Iterator[bytes]:
    """The reply to a feature node: our row count, then (peer index, position) pairs."""
    header = np.asarray([n_rows], dtype=_PAIR).tobytes()
    if len(pairs) == 0:
        yield header
        return
    for start in range(0, len(pairs), RESULT_PAIRS_PER_CHUNK):
        yield header + pairs[start:start + RESULT_PAIRS_PER_CHUNK].tobytes()


def accept(requests: Iterable[node_pb2.PsiAcceptRequest], state: NodeState) -> node_pb2.PsiSummary:
    """Feature node: store the label node's reply as this job's alignment (or only its size)."""
    if state.role != "feature":
        raise ProtocolError("only a feature node accepts an alignment")
    iterator = iter(requests)
    first = next(iterator, None)
    if first is None or not first.HasField("header"):
        raise ProtocolError("PsiAccept must start with a header")
    header = first.header
    session = state.session(check_job_id(header.job_id), header.peer)
    if header.mode != session.mode:
        raise ProtocolError("PsiAccept mode differs from the session's mode")
    n_rows = 0
    indices: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    for expected, request in enumerate(iterator):
        chunk = request.chunk
        if session.mode != node_pb2.PSI_MODE_FULL:
            raise ProtocolError("a cardinality-only session carries no alignment")
        if chunk.kind != RESULT or chunk.index != expected:
            raise ProtocolError(f"expected result chunk {expected}, got index {chunk.index}")
        blob = _open(chunk, session, state)
        if len(blob) < 8 or (len(blob) - 8) % 16:
            raise ProtocolError(f"result chunk {chunk.index} has a malformed length {len(blob)}")
        n_rows = int(np.frombuffer(blob[:8], dtype=_PAIR)[0])
        pairs = np.frombuffer(blob[8:], dtype=_PAIR).reshape(-1, 2)
        indices.append(pairs[:, 0].astype(np.int64))
        positions.append(pairs[:, 1].astype(np.int64))
    size = int(header.intersection_size)
    if session.mode == node_pb2.PSI_MODE_FULL:
        peer_indices = np.concatenate(indices) if indices else np.empty(0, dtype=np.int64)
        pos = np.concatenate(positions) if positions else np.empty(0, dtype=np.int64)
        if len(peer_indices) != size:
            raise ProtocolError(f"reply holds {len(peer_indices)} matches, header says {size}")
        if len(pos) and (pos.min() < 0 or pos.max() >= n_rows or len(np.unique(pos)) != len(pos)):
            raise ProtocolError("reply positions are out of range or repeated")
        own_rows = session.engine.resolve_rows(peer_indices)
        state.alignments.save_fingerprint(session.job_id, session.snapshot.training.ids,
                                          session.snapshot.version)
        state.alignments.save_feature(session.job_id, FeatureAlignment(
            n_rows=n_rows, positions=pos, own_rows=own_rows))
    state.audit.append("psi.accept", job=session.job_id, peer=session.peer, purpose="alignment",
                       rows=size)
    state.end_session(session.job_id, session.peer)
    state.anchors.deposit_soon()
    return node_pb2.PsiSummary(job_id=session.job_id, peer=session.peer,
                               own_rows=session.snapshot.training.rows,
                               intersection_size=size)

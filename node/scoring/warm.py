"""The bank's pseudonyms: kept ones from its cache, the rest evaluated blinded by the coordinator,
and made ahead for the enterprises the bank knows it will score.

A fresh pseudonym costs three X25519 multiplications (the bank blinds, the coordinator raises to
its key, the bank unblinds: ~93 core-µs), so a million fresh ids cost ~47 s on two cores however
well the stages overlap, past the 60 s batch budget once the scoring itself is added. Ids known in
advance (the bank's own table, its portfolio) are therefore made ahead: the decision service warms
them in the background at start and after the coordinator's key changes, `fedcredit portfolio
import` warms the ids it books; a scheduled re-scoring then reads every pseudonym from the cache.
Warming asks the coordinator exactly what a scoring request would (blinded points it cannot map
to ids) and nothing goes to a feature node: it charges no budget and names no enterprise to anyone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from common.tls import TlsFiles, secure_channel
from crypto.pseudonym import PSEUDONYM_BYTES
from crypto.psi_pool import PsiWorkers
from node.config import NodeConfig
from node.scoring.index import pseudonyms_for
from node.scoring.pseudonym_cache import PseudonymCache, cache_path
from proto.fedcredit.v1 import coordinator_pb2, coordinator_pb2_grpc

EVALUATE_DEADLINE_S = 300.0
WARM_CHUNK = 131_072  # ids made per round while warming (two pipelined calls; a stop waits one)


class PseudonymSource:
    """Pseudonyms by id under the coordinator's current key; thread-safe."""

    def __init__(self, stub: coordinator_pb2_grpc.CoordinatorServiceStub,
                 cache: PseudonymCache, workers: PsiWorkers | None) -> None:
        self.stub = stub
        self.cache = cache
        self.workers = workers
        self.key_changed = threading.Event()
        """Set when the coordinator's key changed (everything kept was dropped): a warmer waits
        on it to make the known ids again."""

    def _evaluate(self, points: bytes) -> tuple[bytes, str]:
        reply = self.stub.EvaluatePseudonyms(coordinator_pb2.PseudonymPoints(points=points),
                                             timeout=EVALUATE_DEADLINE_S)
        return reply.points, reply.key_id

    def under_key(self, ids: Sequence[str]) -> tuple[bytes, str]:
        """The pseudonyms of `ids` (16 bytes each, in order) and the id of the key they were
        made under: kept ones from the cache, the rest evaluated blinded by the coordinator (it
        sees random points, no id)."""
        known, key_id = self.cache.lookup(ids)
        if len(known) == len(ids):
            return b"".join([known[i] for i in ids]), key_id
        missing = sorted({i for i in ids if i not in known})
        blob, made_under = pseudonyms_for(missing, self._evaluate, self.workers)
        fresh = {ident: blob[k * PSEUDONYM_BYTES:(k + 1) * PSEUDONYM_BYTES]
                 for k, ident in enumerate(missing)}
        self.cache.store(made_under, fresh)  # a new key drops what was made under the old
        if made_under != key_id:
            if key_id:
                self.key_changed.set()
            if known:
                return self.under_key(ids)
            return b"".join([fresh[i] for i in ids]), made_under
        known.update(fresh)
        return b"".join([known[i] for i in ids]), key_id

    def forget(self) -> None:
        """The coordinator refused our pseudonyms' key: drop them all (and wake a warmer)."""
        self.cache.forget()
        self.key_changed.set()

    def warm(self, ids: Sequence[str], chunk: int = WARM_CHUNK,
             stop: threading.Event | None = None) -> int:
        """Make the pseudonyms of those of `ids` not kept yet, `chunk` ids a round (until
        `stop` is set); how many were made."""
        known, _ = self.cache.lookup(ids)
        missing = [i for i in dict.fromkeys(ids) if i not in known]
        del known
        for start in range(0, len(missing), chunk):
            if stop is not None and stop.is_set():
                return start
            self.under_key(missing[start:start + chunk])
        return len(missing)


def warm_in_background(source: PseudonymSource, known: Callable[[], Sequence[str]],
                       stop: threading.Event, log: Callable[[str, int], None]) -> threading.Thread:
    """A daemon thread that warms `known()` ids now and again each time the key changes, until
    `stop` is set; `log(message, count)` reports each round (errors too: it tries again on the
    next key change, and scoring still makes what it lacks)."""

    def run() -> None:
        while not stop.is_set():
            source.key_changed.clear()
            try:
                made = source.warm(known(), stop=stop)
                log("pseudonyms made ahead for %d known ids", made)
            except Exception as err:  # noqa: BLE001 - a warm-up is an optimisation only
                log(f"warming pseudonyms failed ({type(err).__name__}: {err}); %d made", 0)
            while not stop.is_set() and not source.key_changed.wait(1.0):
                pass

    thread = threading.Thread(target=run, name="pseudonym-warmer", daemon=True)
    thread.start()
    return thread


def warm_ids(config: NodeConfig, ids: Sequence[str], *, insecure: bool = False) -> int:
    """Make ahead, from the bank node's config, the pseudonyms of those of `ids` its cache lacks
    (what `fedcredit portfolio import` does for the ids it books); how many were made."""
    tls = None if insecure else TlsFiles(ca=config.tls.ca, cert=config.tls.cert,
                                         key=config.tls.key)
    channel = secure_channel(config.coordinator, tls, "coordinator")
    cache = PseudonymCache(cache_path(config.state_dir))
    workers = PsiWorkers()
    try:
        source = PseudonymSource(coordinator_pb2_grpc.CoordinatorServiceStub(channel), cache,
                                 workers)
        return source.warm(ids)
    finally:
        workers.close()
        cache.close()
        channel.close()

"""Load on a running decision service: N concurrent clients for a few seconds, one id each call."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from fedcredit.launcher import LocalNetwork, free_port


def _post(url: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            reply.read()
            return int(reply.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0


def load_decisions(url: str, ids: Sequence[str], clients: int, seconds: float, *,
                   uses: int = 1) -> dict[str, Any]:
    """`clients` threads POST /v1/decisions back to back for `seconds`, each id at most `uses`
    times (keep it within the network's per-enterprise daily budget); throughput, latency
    percentiles and errors."""
    expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    pending = itertools.chain.from_iterable(itertools.repeat(ids, uses))
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]
    stop_at = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < stop_at:
            with lock:
                ident = next(pending, None)
            if ident is None:
                return
            started = time.perf_counter()
            status = _post(url + "/v1/decisions", {
                "enterprise_id": ident, "purpose": "load test",
                "consent": {"reference": "bench-load", "expires_at": expiry}})
            elapsed = (time.perf_counter() - started) * 1e3
            with lock:
                if status == 201:
                    latencies.append(elapsed)
                else:
                    errors[0] += 1

    began = time.monotonic()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - began
    done = len(latencies)
    return {"service_clients": clients, "service_seconds": round(wall, 2),
            "service_requests": done + errors[0], "service_errors": errors[0],
            "service_throughput_rps": round(done / max(wall, 1e-9), 2),
            "service_p50_ms": round(float(np.percentile(latencies, 50)), 2) if done else None,
            "service_p99_ms": round(float(np.percentile(latencies, 99)), 2) if done else None}


@contextmanager
def decision_service(net: LocalNetwork, bank: str, timeout: float = 120,
                     grpc_listen: str = "") -> Iterator[str]:
    """`fedcredit decide serve` for `bank` as a child of `net` (its gRPC API on `grpc_listen`
    if given); its base URL once it serves."""
    port = free_port()
    net.children.spawn("decide", [sys.executable, "-m", "fedcredit.cli.main", "decide", "serve",
                                  "--config", str(net.config_path(bank)),
                                  "--listen", f"127.0.0.1:{port}",
                                  *(["--grpc-listen", grpc_listen] if grpc_listen else [])])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            net.children.check_alive(["decide"])
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"decision service not serving after {timeout:.0f}s")
            time.sleep(0.3)
        yield url
    finally:
        net.children.stop("decide")

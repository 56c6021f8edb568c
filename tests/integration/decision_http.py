"""JSON over HTTP to the bank's decision service, as its clients call it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def call_with_retry_after(url: str, body: Any = None) -> tuple[int, dict[str, Any], str | None]:
    """A GET (no body) or a JSON POST: the status, the JSON answer (errors included) and the
    Retry-After header, if any."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, json.loads(reply.read()), reply.headers.get("Retry-After")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), err.headers.get("Retry-After")


def call(url: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    """A GET (no body) or a JSON POST: the status and the JSON answer (errors included)."""
    status, answer, _ = call_with_retry_after(url, body)
    return status, answer

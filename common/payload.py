"""One named payload of a protocol step, whole (the wire splits it into parts elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Payload:
    """A named payload; `sealed` ones are opaque boxes from `sender` to `recipient`."""

    name: str
    data: bytes
    sender: str = ""
    recipient: str = ""
    sealed: bool = False

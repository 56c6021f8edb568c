"""Exception types shared by node, coordinator and CLI, and how a config error is told."""

from __future__ import annotations

import time

from pydantic import ValidationError


class FedcreditError(Exception):
    """Base class for every error fedcredit raises on purpose."""


class ProtocolError(FedcreditError):
    """A peer sent a message that breaks the protocol (wrong step, job, size or signature)."""


class DataValidationError(FedcreditError):
    """A node's table or configuration fails validation; the message lists every problem."""


class PeerUnavailable(FedcreditError):
    """A peer could not be reached before its deadline."""


class ListenError(FedcreditError):
    """A server could not listen on its address (port in use, address not on this machine)."""


class TrustError(FedcreditError):
    """A certificate, signature or peer identity could not be verified."""


class AuditError(FedcreditError):
    """The audit log could not be written or read."""


def describe_validation(err: ValidationError, where: str) -> str:
    """One line per pydantic error: the field (dotted), what is wrong and what was given."""
    lines = [f"{where}: {err.error_count()} invalid field(s):"]
    for item in err.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "(whole file)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (a typo?)"
        given = item.get("input")
        if isinstance(given, str | int | float | bool) and repr(given)[:60] not in message:
            message += f" (got {given!r:.60})"
        lines.append(f"  - {field}: {message}")
    return "\n".join(lines)


class ModelFormatError(DataValidationError):
    """A saved model is in a format this version cannot read; the message says what to do."""


class ProductionModeError(FedcreditError, RuntimeError):
    """A development-only tool (plaintext transport, plaintext crypto twin) was asked for while
    FEDCREDIT_PRODUCTION=1."""


class LimitExceeded(ProtocolError):
    """A stream, step or request passed a size or count limit before it was buffered."""


class CapExceeded(ProtocolError):
    """A party's own cap refused a request (ids per request, requests a day, a budget): the
    caller may ask again smaller or later. `party` and `cap` name who and which setting;
    `retry_after_s` says when a daily cap renews (None: not a matter of waiting)."""

    def __init__(self, message: str, *, party: str = "", cap: str = "",
                 retry_after_s: int | None = None,
                 facts: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.party = party
        self.cap = cap
        self.retry_after_s = retry_after_s
        self.facts = facts
        """Further (name, value) facts a gRPC status carries in its trailing metadata."""


def seconds_to_next_utc_day(now: float | None = None) -> int:
    """Whole seconds until the next UTC midnight, when daily caps renew (at least 1)."""
    moment = time.time() if now is None else now
    return max(1, int(86400 - moment % 86400) + 1)

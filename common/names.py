"""The party-name rule, once: a certificate common name and DNS label (lowercase, digits, dash)."""

from __future__ import annotations

import re

from common.errors import DataValidationError

_PARTY_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
PARTY_NAME_RULE = "1-63 lowercase letters, digits or dashes, not starting or ending with '-'"


class InvalidPartyName(DataValidationError, ValueError):
    """A party name breaks the rule; a ValueError too, so pydantic validators report the field."""


def check_party_name(name: object) -> str:
    """Return ``name`` if it is a valid party name, else raise InvalidPartyName saying why."""
    if not isinstance(name, str) or not _PARTY_NAME.fullmatch(name):
        raise InvalidPartyName(
            f"invalid party name {name!r}: use {PARTY_NAME_RULE} "
            "(it becomes a certificate common name and a DNS name)"
        )
    return name

"""The one party-name rule: what it accepts, what it refuses, and how the refusal reads."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError, field_validator

from common.errors import DataValidationError
from common.names import InvalidPartyName, check_party_name


@pytest.mark.parametrize("name", ["bank-a", "a", "0", "b" * 63, "coordinator", "bank-1-x"])
def test_accepts_dns_labels(name: str) -> None:
    assert check_party_name(name) == name


@pytest.mark.parametrize("name", ["", "Bank_A", "b" * 64, "-bank", "bank-", "bank.a", "bänk", 7])
def test_refuses_with_the_name_and_the_rule(name: object) -> None:
    with pytest.raises(DataValidationError, match=r"invalid party name .*1-63 lowercase"):
        check_party_name(name)


@given(st.text(alphabet="abz09-_A. ", max_size=70))
def test_agrees_with_the_dns_label_pattern(name: str) -> None:
    ok = re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", name) is not None
    try:
        check_party_name(name)
    except InvalidPartyName:
        assert not ok
    else:
        assert ok


def test_a_pydantic_validator_reports_the_field() -> None:
    class Config(BaseModel):
        party: str

        @field_validator("party")
        @classmethod
        def _party(cls, value: str) -> str:
            return check_party_name(value)

    with pytest.raises(ValidationError, match="party\n.*invalid party name 'X'"):
        Config(party="X")

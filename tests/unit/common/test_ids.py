"""The job id rule: what passes names one folder inside a state directory, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import DataValidationError, ProtocolError
from common.ids import check_job_id, valid_job_id


@pytest.mark.parametrize("job_id", ["align-1", "vlr_2024.01", "A", "x" * 64])
def test_letters_digits_and_separators_pass(job_id: str) -> None:
    assert check_job_id(job_id) == job_id


@pytest.mark.parametrize("job_id", ["", ".", "..", "../x", "a/b", "a b", "x" * 65, "é", "a\n"])
def test_anything_else_is_refused_with_the_rule(job_id: str) -> None:
    with pytest.raises(ProtocolError, match="1-64 letters, digits"):
        check_job_id(job_id)


def test_the_caller_chooses_the_error_kind() -> None:
    with pytest.raises(DataValidationError, match="'a/b'"):
        check_job_id("a/b", DataValidationError)


@given(st.text(max_size=80))
def test_a_valid_id_is_one_path_component(job_id: str) -> None:
    if valid_job_id(job_id):
        assert "/" not in job_id and "\\" not in job_id and job_id not in ("", ".", "..")
        assert 1 <= len(job_id) <= 64 and job_id.isascii()

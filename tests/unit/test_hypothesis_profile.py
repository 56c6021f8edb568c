"""The suite's hypothesis profile (tests/conftest.py): properties run without a deadline."""

from hypothesis import given, settings
from hypothesis import strategies as st


def test_the_suite_profile_sets_no_deadline() -> None:
    assert settings.default.deadline is None
    assert settings(max_examples=5).deadline is None  # a test's own settings inherit it


@settings(max_examples=3)
@given(st.integers())
def test_a_property_with_its_own_settings_has_no_deadline(_: int) -> None:
    assert settings.default.deadline is None

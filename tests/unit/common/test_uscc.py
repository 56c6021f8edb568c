"""Tests for Unified Social Credit Code checks and generation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.uscc import (
    ALPHABET,
    WEIGHTS,
    explain_invalid_uscc,
    generate_uscc,
    is_valid_uscc,
    org_code_check_char,
    uscc_check_char,
    uscc_valid_mask,
)

# Published codes of well-known enterprises (Huawei, Tencent, Alibaba) and the standard's example.
REAL_CODES = [
    "914403001922038216",
    "9144030071526726XG",
    "91330100799655058B",
    "91350100M000100Y43",
]

seeds = st.integers(min_value=0, max_value=2**32 - 1)


def _one_code(seed: int) -> str:
    return generate_uscc(np.random.default_rng(seed), 1)[0]


@pytest.mark.parametrize("code", REAL_CODES)
def test_real_codes_pass_both_checks(code: str) -> None:
    assert explain_invalid_uscc(code, check_org_code=True) is None
    assert uscc_check_char(code[:17]) == code[17]
    assert org_code_check_char(code[8:16]) == code[16]


def test_weights_are_powers_of_three_mod_31() -> None:
    assert list(WEIGHTS) == [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("91440300192203821", "wrong length 17 (expected 18)"),
        ("", "wrong length 0 (expected 18)"),
        ("9144I30019220382166", "wrong length 19 (expected 18)"),
        ("9144I3001922038216", "character 'I' at position 5 not in the alphabet"),
        ("914403001922038217", "check character '7' expected '6'"),
        ("9144030071526726xg", "character 'x' at position 17 not in the alphabet"),
    ],
)
def test_explain_names_the_problem(code: str, reason: str) -> None:
    explanation = explain_invalid_uscc(code)
    assert explanation is not None
    assert explanation.startswith(reason)
    assert not is_valid_uscc(code)


def test_lower_case_gets_a_hint() -> None:
    assert "upper case" in (explain_invalid_uscc("9144030071526726xg") or "")


def test_org_code_check_is_optional() -> None:
    code = "914403001922038216"
    first17 = code[:16] + "2"  # wrong GB 11714 digit, then a correct mod-31 character
    bad_org = first17 + uscc_check_char(first17)
    assert is_valid_uscc(bad_org)
    assert not is_valid_uscc(bad_org, check_org_code=True)
    assert "expected '1'" in (explain_invalid_uscc(bad_org, check_org_code=True) or "")


def test_org_code_check_char_maps_10_and_11() -> None:
    assert org_code_check_char("71526726") == "X"  # Tencent
    body_for_zero = next(
        b for b in (f"{i:08d}" for i in range(1000)) if org_code_check_char(b) == "0"
    )
    total = sum(int(c) * w for c, w in zip(body_for_zero, (3, 7, 9, 10, 5, 8, 4, 2), strict=True))
    assert total % 11 == 0


def test_check_char_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="17 characters"):
        uscc_check_char("123")
    with pytest.raises(ValueError, match="position 3"):
        uscc_check_char("91O403001922038216"[:17])


def test_generate_edge_cases() -> None:
    assert generate_uscc(np.random.default_rng(0), 0) == []
    with pytest.raises(ValueError):
        generate_uscc(np.random.default_rng(0), -1)


def test_generate_is_deterministic_and_looks_like_enterprises() -> None:
    codes = generate_uscc(np.random.default_rng(3), 500)
    assert codes == generate_uscc(np.random.default_rng(3), 500)
    assert all(c.startswith("91") for c in codes)
    assert any(c[8:10] == "MA" for c in codes) and any(c[8:16].isdigit() for c in codes)


@given(seed=seeds, n=st.integers(min_value=0, max_value=300))
def test_generated_codes_are_valid_and_unique(seed: int, n: int) -> None:
    codes = generate_uscc(np.random.default_rng(seed), n)
    assert len(codes) == n
    assert len(set(codes)) == n
    assert all(is_valid_uscc(c, check_org_code=True) for c in codes)


@given(first17=st.text(alphabet=ALPHABET, min_size=17, max_size=17))
def test_check_char_completes_any_body(first17: str) -> None:
    assert is_valid_uscc(first17 + uscc_check_char(first17))


@given(seed=seeds, position=st.integers(0, 17), offset=st.integers(1, 30))
def test_any_single_substitution_is_detected(seed: int, position: int, offset: int) -> None:
    code = _one_code(seed)
    replacement = ALPHABET[(ALPHABET.index(code[position]) + offset) % 31]
    altered = code[:position] + replacement + code[position + 1 :]
    assert altered != code
    assert not is_valid_uscc(altered)


@given(seed=seeds, position=st.integers(0, 16))
def test_adjacent_transposition_is_detected(seed: int, position: int) -> None:
    code = _one_code(seed)
    a, b = code[position], code[position + 1]
    swapped = code[:position] + b + a + code[position + 2 :]
    assert is_valid_uscc(swapped) == (a == b)


@given(text=st.text(max_size=40))
def test_explain_never_raises_and_agrees_with_is_valid(text: str) -> None:
    explanation = explain_invalid_uscc(text)
    assert (explanation is None) == is_valid_uscc(text)
    if explanation is None:
        assert len(text) == 18


_SOME = generate_uscc(np.random.default_rng(7), 8)
_USCC_LIKE = st.text(alphabet=ALPHABET + "aIOSVZ?é", min_size=17, max_size=19) | st.builds(
    lambda code, pos, ch: code[:pos] + ch + code[pos + 1 :],
    st.sampled_from(_SOME),
    st.integers(0, 17),
    st.sampled_from(ALPHABET),
)


@settings(max_examples=300)
@given(codes=st.lists(_USCC_LIKE, min_size=1, max_size=20))
def test_vectorised_uscc_check_agrees_with_explain_invalid_uscc(codes: list[str]) -> None:
    mask = uscc_valid_mask(np.array(codes + _SOME[:1], dtype=object))

    assert mask.tolist() == [explain_invalid_uscc(c) is None for c in codes] + [True]

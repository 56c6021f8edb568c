"""Unified Social Credit Codes (GB 32100-2015): check characters, validation and generation."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
"""The 31 characters a USCC may contain; a character's value is its index here."""

LENGTH = 18
WEIGHTS: tuple[int, ...] = tuple(pow(3, i, 31) for i in range(17))
"""Weights of positions 1..17 for the mod-31 check: 3^(i-1) mod 31."""

ORG_CODE_WEIGHTS: tuple[int, ...] = (3, 7, 9, 10, 5, 8, 4, 2)
"""Weights of the 8 body characters of an organisation code (GB 11714-1997)."""

REGION_CODES: tuple[str, ...] = (
    "110105",  # Beijing, Chaoyang
    "110108",  # Beijing, Haidian
    "120116",  # Tianjin, Binhai
    "310115",  # Shanghai, Pudong
    "320505",  # Suzhou, Huqiu
    "320583",  # Kunshan
    "330106",  # Hangzhou, Xihu
    "330206",  # Ningbo, Beilun
    "340104",  # Hefei, Shushan
    "350203",  # Xiamen, Siming
    "370202",  # Qingdao, Shinan
    "420106",  # Wuhan, Wuchang
    "430104",  # Changsha, Yuelu
    "440106",  # Guangzhou, Tianhe
    "440305",  # Shenzhen, Nanshan
    "441900",  # Dongguan
    "500112",  # Chongqing, Yubei
    "510107",  # Chengdu, Wuhou
    "610113",  # Xi'an, Yanta
)
"""Administrative division codes (GB/T 2260) used for generated codes."""

_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
_WEIGHTS = np.array(WEIGHTS, dtype=np.int64)
_ORG_WEIGHTS = np.array(ORG_CODE_WEIGHTS, dtype=np.int64)
_ALPHABET_BYTES = np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)
# GB 11714 values of the USCC alphabet: digits 0-9, letters A=10 ... Z=35 (ASCII order).
_ORG_VALUE_OF_INDEX = np.array([int(ch, 36) for ch in ALPHABET], dtype=np.int64)
_DIGIT_INDEXES = np.arange(10)
_ANY_INDEXES = np.arange(31)


def check_values(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The mod-31 check rule, once: check-character values for rows of 17 alphabet values."""
    out: npt.NDArray[np.int64] = (31 - (values @ _WEIGHTS) % 31) % 31
    return out


def uscc_check_char(first17: str) -> str:
    """Return the check character (position 18) for the first 17 characters of a USCC."""
    if len(first17) != 17:
        raise ValueError(f"expected 17 characters, got {len(first17)}")
    for position, ch in enumerate(first17, start=1):
        if ch not in _VALUE:
            raise ValueError(f"character {ch!r} at position {position} not in the alphabet")
    values = np.array([[_VALUE[ch] for ch in first17]], dtype=np.int64)
    return ALPHABET[int(check_values(values)[0])]


def org_code_check_char(body8: str) -> str:
    """Return the GB 11714 check character for the 8-character body of an organisation code."""
    if len(body8) != 8:
        raise ValueError(f"expected 8 characters, got {len(body8)}")
    if not all(ch.isdigit() or "A" <= ch <= "Z" for ch in body8):
        raise ValueError(f"organisation code body {body8!r} must be digits or A-Z")
    total = sum(int(ch, 36) * w for ch, w in zip(body8, ORG_CODE_WEIGHTS, strict=True))
    check = 11 - total % 11
    return "X" if check == 10 else "0" if check == 11 else str(check)


def explain_invalid_uscc(code: str, *, check_org_code: bool = False) -> str | None:
    """Return None if ``code`` is a valid USCC, else a reason a person can act on.

    The mod-31 check character is always verified. With ``check_org_code``, positions 9-17 must
    also be an organisation code with a correct GB 11714 check digit; codes issued in practice
    satisfy it, but some data sets carry codes that do not, so it is off by default.
    """
    if len(code) != LENGTH:
        return f"wrong length {len(code)} (expected {LENGTH})"
    for position, ch in enumerate(code, start=1):
        if ch not in _VALUE:
            hint = " (codes are upper case)" if ch.upper() in _VALUE else ""
            return f"character {ch!r} at position {position} not in the alphabet {ALPHABET}{hint}"
    expected = uscc_check_char(code[:17])
    if code[17] != expected:
        return f"check character {code[17]!r} expected {expected!r}"
    if check_org_code:
        org_expected = org_code_check_char(code[8:16])
        if code[16] != org_expected:
            return (
                f"organisation code {code[8:17]!r} (positions 9-17) has check digit "
                f"{code[16]!r}, expected {org_expected!r} (GB 11714)"
            )
    return None


def is_valid_uscc(code: str, *, check_org_code: bool = False) -> bool:
    """Return True if ``code`` is an 18-character USCC with a correct check character."""
    return explain_invalid_uscc(code, check_org_code=check_org_code) is None


_VALUE_OF_CODE_POINT = np.full(129, -1, dtype=np.int64)  # -1 outside the alphabet
_VALUE_OF_CODE_POINT[[ord(c) for c in ALPHABET]] = np.arange(len(ALPHABET))


def uscc_valid_mask(ids: npt.NDArray[np.object_]) -> npt.NDArray[np.bool_]:
    """Vectorised twin of ``is_valid_uscc(code)`` (length, alphabet, check character)."""
    # One spare character: longer ids are cut to LENGTH + 1 and still fail the length test.
    width = LENGTH + 1
    codes = np.asarray(ids, dtype=f"<U{width}").view(np.uint32).reshape(len(ids), width)
    values = _VALUE_OF_CODE_POINT[np.minimum(codes[:, :LENGTH], 128)]  # NUL padding maps to -1
    ok: npt.NDArray[np.bool_] = (
        (codes[:, LENGTH] == 0)
        & (values >= 0).all(axis=1)
        & (values[:, LENGTH - 1] == check_values(values[:, : LENGTH - 1]))
    )
    return ok


def _draw_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw ``n`` codes as an (n, 18) array of alphabet indexes; duplicates are possible."""
    idx = np.empty((n, LENGTH), dtype=np.int64)
    idx[:, 0] = _VALUE["9"]  # registered with industry and commerce
    idx[:, 1] = _VALUE["1"]  # enterprise
    regions = np.array([[_VALUE[c] for c in r] for r in REGION_CODES], dtype=np.int64)
    idx[:, 2:8] = regions[rng.integers(0, len(REGION_CODES), size=n)]
    # Organisation code body: older codes are 8 digits, codes issued since 2015 start with "MA".
    body = rng.choice(_DIGIT_INDEXES, size=(n, 8))
    new_style = rng.random(n) < 0.4
    body[new_style, 0] = _VALUE["M"]
    body[new_style, 1] = _VALUE["A"]
    tail = rng.choice(_ANY_INDEXES, size=(n, 6))
    body[new_style, 2:] = tail[new_style]
    idx[:, 8:16] = body
    org_check = 11 - (_ORG_VALUE_OF_INDEX[body] @ _ORG_WEIGHTS) % 11
    idx[:, 16] = np.where(org_check == 10, _VALUE["X"], np.where(org_check == 11, 0, org_check))
    idx[:, 17] = check_values(idx[:, :17])
    return idx


def generate_uscc(rng: np.random.Generator, n: int) -> list[str]:
    """Return ``n`` distinct valid USCCs of enterprises ('91' + region + organisation code).

    Deterministic for a given generator state; the organisation code part also carries a valid
    GB 11714 check digit.
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    codes: list[str] = []
    seen: set[str] = set()
    while len(codes) < n:
        need = n - len(codes)
        chars = _ALPHABET_BYTES[_draw_codes(rng, need + need // 10 + 8)]
        text = chars.tobytes().decode("ascii")
        for start in range(0, len(text), LENGTH):
            code = text[start : start + LENGTH]
            if code not in seen:
                seen.add(code)
                codes.append(code)
                if len(codes) == n:
                    break
    return codes

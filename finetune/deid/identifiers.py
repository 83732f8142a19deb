"""Check digits of identifiers whose surrogates must stay well-formed."""

from __future__ import annotations

import re

_CN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def cn_check_digit(body: str) -> str:
    """The 18th character of a PRC resident identity number (GB 11643-1999, ISO 7064 MOD 11-2)."""
    return "10X98765432"[sum(int(c) * w for c, w in zip(body, _CN_WEIGHTS)) % 11]


def cn_resident_id_valid(text: str) -> bool:
    return bool(re.fullmatch(r"\d{17}[\dXx]", text)) and cn_check_digit(text[:17]) == text[17].upper()

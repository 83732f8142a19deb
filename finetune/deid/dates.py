"""Parse a date as written in a note and write a shifted date in the same style.

Every date of a record moves by one offset, so intervals (length of stay, days since surgery)
survive while the real dates do not. Only the components are rewritten; separators, spacing,
ordinal suffixes, month-name style and zero padding are kept from the original.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"]
ABBREVIATIONS = {m[:3]: i + 1 for i, m in enumerate(MONTHS)} | {"sept": 9}
REFERENCE_YEAR = 2000  # a leap year, for dates written without one ("March 14th", "2/29")

_DAY = r"(?P<d>\d{1,2})(?P<ord>st|nd|rd|th)?"
_MON = r"(?P<mon>[A-Za-z]{3,9}\.?)"
PATTERNS = [
    ("numeric", re.compile(r"(?P<a>\d{1,2})(?P<s>[/.-])(?P<b>\d{1,2})(?P=s)(?P<y>\d{4}|\d{2})")),
    ("iso", re.compile(r"(?P<y>\d{4})(?P<s>[/-])(?P<m>\d{1,2})(?P=s)(?P<d>\d{1,2})")),
    ("month_day", re.compile(r"(?P<m>\d{1,2})/(?P<d>\d{1,2})")),
    ("month_year_numeric", re.compile(r"(?P<m>\d{1,2})/(?P<y>\d{4})")),
    ("named_dmy_hyphen", re.compile(r"(?P<d>\d{1,2})-" + _MON + r"-(?P<y>\d{4}|\d{2})", re.I)),
    ("named_mdy", re.compile(_MON + r"\s+" + _DAY + r"(?:\s*,?\s*(?P<y>\d{4}))?", re.I)),
    ("named_dmy", re.compile(_DAY + r"\s+(?:of\s+)?" + _MON + r"(?:\s*,?\s*(?P<y>\d{4}))?", re.I)),
    ("named_my", re.compile(_MON + r"\s*,?\s*(?:of\s+)?(?P<y>\d{4})", re.I)),
    ("cjk", re.compile(r"(?P<y>\d{4})\s*年\s*(?P<m>\d{1,2})\s*月(?:\s*(?P<d>\d{1,2})\s*[日号])?")),
    ("cjk_md", re.compile(r"(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*[日号]")),
    ("ymd_dot", re.compile(r"(?P<y>\d{4})(?P<s>[.．])(?P<m>\d{1,2})(?P=s)(?P<d>\d{1,2})")),
]

# 二〇二四年一月十六日: years digit by digit, months and days as numbers (十六, 二十九)
_ZH_DIGITS = "〇一二三四五六七八九"
_ZH_DATE = re.compile(r"(?P<y>[〇零○一二三四五六七八九]{4})年(?P<m>[一二三四五六七八九十]{1,2})月"
                      r"(?:(?P<d>[一二三四五六七八九十]{1,3})(?P<suffix>[日号]))?")


def _zh_number(text: str) -> int:
    if "十" not in text:
        return _ZH_DIGITS.index(text)
    tens, _, units = text.partition("十")
    return (_ZH_DIGITS.index(tens) if tens else 1) * 10 + (_ZH_DIGITS.index(units) if units else 0)


def _zh_write(value: int) -> str:
    tens, units = divmod(value, 10)
    if not tens:
        return _ZH_DIGITS[units]
    return ("" if tens == 1 else _ZH_DIGITS[tens]) + "十" + (_ZH_DIGITS[units] if units else "")


def _shift_zh(text: str, days: int) -> str | None:
    match = _ZH_DATE.fullmatch(text.strip())
    if not match:
        return None
    year = int("".join(str(_ZH_DIGITS.index("〇" if c in "零○" else c)) for c in match["y"]))
    try:
        old = date(year, _zh_number(match["m"]), _zh_number(match["d"]) if match["d"] else 15)
    except ValueError:
        return None
    new = old + timedelta(days=days)
    out = "".join(_ZH_DIGITS[int(c)] for c in str(new.year)) + "年" + _zh_write(new.month) + "月"
    return out + (_zh_write(new.day) + match["suffix"] if match["d"] else "")


def month_number(word: str) -> int | None:
    w = word.lower().rstrip(".")
    if w in MONTHS:
        return MONTHS.index(w) + 1
    return ABBREVIATIONS.get(w) if len(w) <= 4 else None


def _ordinal(day: int) -> str:
    if 11 <= day % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _number(value: int, original: str, pad: bool) -> str:
    return f"{value:02d}" if pad or (len(original) == 2 and original.startswith("0")) else str(value)


def _month_word(month: int, original: str) -> str:
    bare = original.rstrip(".")
    word = MONTHS[month - 1] if bare.lower() in MONTHS else MONTHS[month - 1][:3]
    word += "." if original.endswith(".") and word not in MONTHS else ""
    if bare.isupper():
        return word.upper()
    return word.capitalize() if bare[:1].isupper() else word


def _case_like(suffix: str, original: str) -> str:
    return suffix.upper() if original.isupper() else suffix


class ParsedDate:
    """A date found in text, with what is needed to write another date the same way."""

    def __init__(self, text: str, kind: str, match: re.Match, value: date, has_year: bool, has_day: bool,
                 month_first: bool = True):
        self.text, self.kind, self.match, self.value = text, kind, match, value
        self.has_year, self.has_day, self.month_first = has_year, has_day, month_first

    def render(self, new: date) -> str:
        g = self.match.groupdict()
        pad = any(g.get(k) and len(g[k]) == 2 and g[k].startswith("0") for k in ("a", "b", "m", "d"))
        replacements: dict[str, str] = {}
        if self.kind == "numeric":
            month_first = self.month_first
            replacements["a"] = _number(new.month if month_first else new.day, g["a"], pad)
            replacements["b"] = _number(new.day if month_first else new.month, g["b"], pad)
            replacements["y"] = f"{new.year % 100:02d}" if len(g["y"]) == 2 else str(new.year)
        else:
            if g.get("y"):
                replacements["y"] = str(new.year) if len(g["y"]) == 4 else f"{new.year % 100:02d}"
            if g.get("m"):
                replacements["m"] = _number(new.month, g["m"], pad)
            if g.get("mon"):
                replacements["mon"] = _month_word(new.month, g["mon"])
            if g.get("d"):
                replacements["d"] = _number(new.day, g["d"], pad)
            if g.get("ord"):
                replacements["ord"] = _case_like(_ordinal(new.day), g["ord"])
        out = self.text
        for name in sorted(replacements, key=lambda n: self.match.start(n), reverse=True):
            out = out[:self.match.start(name)] + replacements[name] + out[self.match.end(name):]
        return out


def _full_year(digits: str) -> int:
    """"1948" -> 1948; "48" -> 1948 and "23" -> 2023 (a two-digit year is never in the future)."""
    year = int(digits)
    if len(digits) == 4:
        return year
    return 2000 + year if 2000 + year <= date.today().year else 1900 + year


def parse(text: str) -> ParsedDate | None:
    """The date written in ``text`` (the whole string), or None when it is not one."""
    stripped = text.strip()
    for kind, pattern in PATTERNS:
        match = pattern.fullmatch(stripped)
        if not match:
            continue
        g = match.groupdict()
        try:
            if kind == "numeric":
                a, b = int(g["a"]), int(g["b"])
                year = _full_year(g["y"])
                month_first = a <= 12  # US order unless the first number cannot be a month
                month, day = (a, b) if month_first else (b, a)
                return ParsedDate(stripped, kind, match, date(year, month, day), True, True, month_first)
            if kind.startswith("named"):
                month = month_number(g["mon"])
                if month is None:
                    continue
            else:
                month = int(g["m"])
            year = _full_year(g["y"]) if g.get("y") else REFERENCE_YEAR
            day = int(g["d"]) if g.get("d") else 15
            return ParsedDate(stripped, kind, match, date(year, month, day), bool(g.get("y")), bool(g.get("d")))
        except ValueError:
            continue
    return None


def shift(text: str, days: int) -> str | None:
    """``text`` moved by ``days`` in its own format, or None when it cannot be parsed."""
    parsed = parse(text)
    if parsed is None:
        return _shift_zh(text, days)
    return parsed.render(parsed.value + timedelta(days=days))

"""Consistent, realistic surrogates for one record.

One SurrogateMap per record (or encounter): the same original always gets the same surrogate in
every field of that record, every date moves by one offset (intervals survive), and everything is
a pure function of the seed and an optional secret key, so a re-run gives the same training data.
The key is never empty: ``COPILOT_DEID_KEY`` where set, else ``COPILOT_HOME/deid.key`` (32 random
bytes, mode 0600, created on first use), so nobody who knows only the seed (often the record id)
can recompute the date offset or the surrogates.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
import string
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import yaml

from finetune.deid import dates
from finetune.deid.identifiers import cn_check_digit, cn_resident_id_valid

POOLS_FILE = Path(__file__).with_name("surrogates.yaml")
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
NAME_UNIT = re.compile(r"[^\s,;/()]+")
LETTERS = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")
MAX_DRAWS = 60


@lru_cache(maxsize=4)
def load_pools(path: Path = POOLS_FILE) -> dict:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    for key in ("female_given_names", "male_given_names", "surnames", "street_names", "cities", "facility_names",
                "email_domains"):
        if not data.get(key):
            raise ValueError(f"{path}: pool {key!r} is missing or empty")
    return data


def _like(new: str, old: str) -> str:
    """``new`` in the letter case of ``old``."""
    letters = [c for c in old if c.isalpha()]
    if letters and all(c.islower() for c in letters):
        return new.lower()
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return new.upper()
    return new


def _fill(template: str, chars: str) -> str:
    """Write ``chars`` into the alphanumeric positions of ``template``, keeping its separators."""
    out, it = [], iter(chars)
    for c in template:
        out.append(next(it) if c.isalnum() else c)
    return "".join(out)


def default_key() -> str:
    """The deployment's de-identification secret (settings: COPILOT_DEID_KEY or HOME/deid.key)."""
    from copilot.config import Settings

    return Settings().deid_secret()


class SurrogateMap:
    """Original -> surrogate for one record; deterministic for a given seed (and key)."""

    def __init__(self, seed: str, *, key: str | None = None, pools: Path = POOLS_FILE):
        if not isinstance(seed, str) or not seed:
            raise ValueError("SurrogateMap needs a non-empty string seed (e.g. the encounter id)")
        self.seed = seed
        secret = key if key is not None else default_key()
        if not secret:
            raise ValueError("the de-identification key must not be empty")
        self._key = secret.encode("utf-8")
        self._pools = load_pools(pools)
        self._cache: dict[tuple[str, str], str] = {}
        self._used: set[str] = set()
        self._originals: set[str] = set()
        shift = self._pools.get("date_shift_days") or {"min": 30, "max": 1095}
        rng = self._rng("date-shift", "")
        self.date_offset_days = -rng.randint(int(shift["min"]), int(shift["max"]))  # back: never a future date

    # ------------------------------------------------------------------ public
    @property
    def name_tokens(self) -> frozenset[str]:
        """Lower-cased words of the names replaced so far (to find their other mentions)."""
        return frozenset(self._originals)

    def remember_names(self, words) -> None:
        self._originals.update(w.lower() for w in words)

    def opaque_id(self, original: str, prefix: str) -> str:
        """A stable id that reveals nothing of ``original`` (record and document ids)."""
        digest = hmac.new(self._key, f"{self.seed}\x1fid\x1f{original}".encode("utf-8"), hashlib.sha256)
        return f"{prefix}-{digest.hexdigest()[:16]}"

    def shift_date(self, value: date | datetime) -> date | datetime:
        return value + timedelta(days=self.date_offset_days)

    def replace(self, type_: str, original: str, *, given_names: Mapping[str, str] | None = None) -> str:
        """The surrogate for ``original`` of PHI type ``type_``.

        ``given_names`` (lower-cased given name -> "F"/"M") lets a name keep its gender and tells a
        lone given name ("Gloria") from a lone surname ("Alvarez").
        """
        if HAN.search(original) and type_ in ("NAME", "ADDRESS", "LOCATION", "AGE"):
            return self._chinese(type_, original)
        if type_ == "NAME":
            return self._name(original, given_names or {})
        if type_ == "DATE":
            return self._date(original)
        if type_ == "AGE":
            ages = self._pools.get("age_over_89") or {"digits": "90", "words": "ninety"}
            return ages["digits"] if any(c.isdigit() for c in original) else _like(ages["words"], original)
        handlers = {"PHONE": self._phone, "FAX": self._phone, "EMAIL": self._email, "URL": self._url,
                    "IP": self._ip, "ADDRESS": self._address, "LOCATION": self._location}
        return handlers.get(type_, self._identifier)(original)

    def _chinese(self, type_: str, original: str) -> str:
        """A Chinese surrogate for Chinese PHI, drawn once per original under the key."""
        pools = self._pools
        if type_ == "AGE":  # HIPAA: over 89 collapses into 90, in the original's script
            return "90" + original[len(original.rstrip("岁周")):] if any(c.isdigit() for c in original) \
                else "九十" + original[len(original.rstrip("岁周")):]
        if type_ == "NAME":
            surnames = sorted(pools["zh_surnames"], key=len)
            compound = len(original) > 2 and original[:2] in {"欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "司徒"}
            given_len = max(1, len(original) - (2 if compound else 1))
            self._originals.add(original.lower())
            return self._draw("zh-name", original, lambda r: r.choice(surnames)
                              + "".join(r.choice(pools["zh_given_chars"]) for _ in range(given_len)))
        if type_ == "ADDRESS":
            return self._draw("zh-address", original, lambda r: (
                r.choice(pools["zh_cities"]) + r.choice(pools["zh_districts"]) + r.choice(pools["zh_roads"])
                + f"{r.randint(1, 999)}号" + (f"{r.randint(1, 30)}{r.randint(1, 4):02d}室" if original.endswith("室") else "")))
        suffix = next((s for s in sorted(pools["zh_institution_suffixes"], key=len, reverse=True)
                       if original.endswith(s)), "")
        return self._draw("zh-location", original, lambda r: r.choice(pools["zh_place_names"]) + suffix)

    # ------------------------------------------------------------------ helpers
    def _rng(self, kind: str, original: str, attempt: int = 0) -> random.Random:
        message = f"{self.seed}\x1f{kind}\x1f{original}\x1f{attempt}".encode("utf-8")
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return random.Random(int.from_bytes(digest[:16], "big"))

    def _draw(self, kind: str, original: str, make) -> str:
        """A fresh value from ``make(rng)`` that no other original of this record got."""
        cached = self._cache.get((kind, original))
        if cached is not None:
            return cached
        value = ""
        for attempt in range(MAX_DRAWS):
            value = make(self._rng(kind, original, attempt))
            if value.lower() not in self._used and value.lower() not in self._originals and value != original:
                break
        self._cache[(kind, original)] = value
        self._used.add(value.lower())
        return value

    def _name(self, original: str, given_names: Mapping[str, str]) -> str:
        units = list(NAME_UNIT.finditer(original))
        comma = original.find(",")
        pieces, last = [], 0
        for index, unit in enumerate(units):
            if comma >= 0:
                role = "surname" if unit.start() < comma else "given"
            elif len(units) > 1:
                role = "surname" if index == len(units) - 1 else "given"
            else:
                role = "given" if unit.group().lower().strip(".") in given_names else "surname"
            if role == "given":
                role = "male" if given_names.get(unit.group().lower().strip(".")) == "M" else "female"
            pieces.append(original[last:unit.start()])
            pieces.append(self._name_unit(unit.group(), role))
            last = unit.end()
        pieces.append(original[last:])
        return "".join(pieces)

    def _name_unit(self, unit: str, role: str) -> str:
        if re.fullmatch(r"[A-Za-z]\.?", unit):  # an initial
            letter = self._draw("initial", unit[0].upper(), lambda r: r.choice(string.ascii_uppercase))
            return _like(letter, unit[0]) + unit[1:]
        out, last = [], 0
        for word in LETTERS.finditer(unit):
            key = word.group().lower()
            self._originals.add(key)
            pool = self._pools[{"male": "male_given_names", "female": "female_given_names"}.get(role, "surnames")]
            new = self._draw("name", key, lambda r: r.choice(pool))
            out.append(unit[last:word.start()])
            out.append(_like(new, word.group()))
            last = word.end()
        out.append(unit[last:])
        return "".join(out)

    def _date(self, original: str) -> str:
        shifted = dates.shift(original, self.date_offset_days)
        if shifted is not None:
            return shifted
        return self._draw("date", original.lower(), lambda r: (date(2000, 1, 1) + timedelta(
            days=r.randint(0, 9000))).strftime("%m/%d/%Y"))

    def _phone(self, original: str) -> str:
        digits = re.sub(r"\D", "", original)

        def make(r: random.Random) -> str:
            if re.match(r"^\s*(?:\+|00)?86", original) and len(digits) in (13, 15):
                prefix = digits[:-11]
                return prefix + "1" + r.choice("3456789") + "".join(r.choice(string.digits) for _ in range(9))
            if digits[0] == "0" and len(digits) in (10, 11, 12):  # a Chinese landline: 0 + area code + 7-8 digits
                return "0" + "".join(r.choice(string.digits) for _ in range(len(digits) - 9)) \
                    + r.choice("2345678") + "".join(r.choice(string.digits) for _ in range(7))
            if len(digits) == 11 and digits[0] == "1" and not re.match(r"^\s*\+?1[\s.-]", original):
                return "1" + r.choice("3456789") + "".join(r.choice(string.digits) for _ in range(9))
            if len(digits) == 10 or (len(digits) == 11 and digits[0] == "1"):
                area = f"{r.randint(2, 9)}{r.randint(0, 8)}{r.randint(0, 9)}"
                if area == "555" or area[1:] == "11":
                    area = "6" + area[1:].replace("11", "12").replace("55", "52")
                return digits[:-10] + area + "55501" + f"{r.randint(0, 99):02d}"
            return str(r.randint(1, 9)) + "".join(r.choice(string.digits) for _ in range(len(digits) - 1))

        return _fill(original, self._draw("phone", digits, make)) if digits else original

    def _email(self, original: str) -> str:
        pools = self._pools

        def make(r: random.Random) -> str:
            given = pools["female_given_names"] + pools["male_given_names"]
            return (f"{r.choice(given).lower()}.{r.choice(pools['surnames']).lower()}"
                    f"@{r.choice(pools['email_domains'])}")

        return self._draw("email", original.lower(), make)

    def _url(self, original: str) -> str:
        scheme = re.match(r"^[a-z]+://", original, re.I)
        has_path = bool(re.search(r"[^/]/[^/]", original.split("://")[-1] + " "))

        def make(r: random.Random) -> str:
            host = r.choice(self._pools.get("url_hosts") or ["www.example.org"])
            if not scheme and not original.lower().startswith("www."):
                host = host.removeprefix("www.")
            path = "/" + "".join(r.choice(string.ascii_lowercase + string.digits) for _ in range(8)) if has_path else ""
            return (scheme.group() if scheme else "") + host + path

        return self._draw("url", original, make)

    def _ip(self, original: str) -> str:
        def make(r: random.Random) -> str:
            if ":" in original:
                return f"{self._pools.get('ipv6_prefix', '2001:db8::')}{r.randint(1, 0xFFFF):x}"
            prefix = r.choice(self._pools.get("ipv4_prefixes") or ["192.0.2"])
            return f"{prefix}.{r.randint(1, 254)}"

        return self._draw("ip", original, make)

    def _digits(self, text: str, kind: str) -> str:
        """Every digit run replaced (same length, no leading zero added), consistently."""
        def run(m: re.Match) -> str:
            value = m.group()
            return self._draw(kind, value, lambda r: (str(r.randint(1, 9)) if value[0] != "0" else "0")
                              + "".join(r.choice(string.digits) for _ in range(len(value) - 1)))
        return re.sub(r"\d+", run, text)

    def _address(self, original: str) -> str:
        parts = original.split(",")
        out = []
        units = "|".join(map(re.escape, ["Apt", "Apartment", "Unit", "Suite", "Ste", "Fl", "Floor", "Rm", "Room",
                                         "Bldg", "#"]))
        for index, part in enumerate(parts):
            street = re.fullmatch(r"(\s*)(\d{1,6})(\s+)((?:[NSEW]\.?\s+)?)(.+?)(\s+)([A-Za-z]+\.?)(.*)", part)
            box = re.fullmatch(r"(\s*[Pp]\.?\s*[Oo]\.?\s*[Bb]ox\s+)(\d+)(.*)", part)
            if index == 0 and street:
                lead, number, sp1, direction, name, sp2, suffix, tail = street.groups()
                new_name = self._draw("street", name.lower(), lambda r: r.choice(self._pools["street_names"]))
                out.append(lead + self._digits(number, "house") + sp1 + direction + _like(new_name, name)
                           + sp2 + suffix + self._digits(tail, "unit"))
            elif box:
                out.append(box.group(1) + self._digits(box.group(2), "box") + box.group(3))
            elif re.match(rf"\s*(?:{units})\b", part, re.I):
                out.append(re.sub(r"[A-Za-z0-9]+$", lambda m: self._digits(m.group(), "unit")
                                  if m.group().isdigit() else self._identifier(m.group()), part))
            elif re.fullmatch(r"\s*[A-Z]{2}(?:\s+\d{5}(?:-\d{4})?)?\s*", part):
                out.append(self._digits(part, "zip"))
            elif re.fullmatch(r"\s*\d{5}(?:-\d{4})?\s*", part):
                out.append(self._digits(part, "zip"))
            elif re.fullmatch(r"\s*[^\W\d_][^\d,]*", part):
                stripped = part.strip()
                city = self._draw("city", stripped.lower(), lambda r: r.choice(self._pools["cities"]))
                out.append(part[:len(part) - len(part.lstrip())] + _like(city, stripped))
            else:
                out.append(self._identifier(part))
        return ",".join(out)

    def _location(self, original: str) -> str:
        lowered = original.lower()
        for suffix in sorted(self._pools.get("facility_suffixes") or [], key=len, reverse=True):
            if lowered.endswith(" " + suffix.lower()) or lowered == suffix.lower():
                name = self._draw("facility", lowered, lambda r: r.choice(self._pools["facility_names"]))
                return _like(name, original) + original[len(original) - len(suffix) - 1:]
        return _like(self._draw("city", lowered, lambda r: r.choice(self._pools["cities"])), original)

    def _identifier(self, original: str) -> str:
        key = re.sub(r"[^0-9A-Za-z]", "", original).upper()
        if not key:
            return original
        if cn_resident_id_valid(key):
            return self._draw("cn-id", key, self._cn_resident_id(key))

        def make(r: random.Random) -> str:
            return "".join(r.choice(string.digits) if c.isdigit() else r.choice(string.ascii_uppercase)
                           for c in key)

        new = self._draw("id", key, make)
        return "".join(n.lower() if o.islower() else n for n, o in zip(_fill(original, new), original))

    def _cn_resident_id(self, original: str):
        def make(r: random.Random) -> str:
            try:
                born = self.shift_date(date(int(original[6:10]), int(original[10:12]), int(original[12:14])))
            except ValueError:
                born = date(1970, 1, 1)
            body = f"{r.randint(110000, 659999)}{born:%Y%m%d}{r.randint(0, 999):03d}"
            return body + cn_check_digit(body)
        return make

"""Allergies written in a note's text ("过敏史：磺胺类药物过敏", "Allergies: PCN (rash)").

A hospital's structured allergy list is often empty while the note states the allergy: QC must
read both. Headers, "no allergy" phrases and filler words are data (data/allergies.yaml)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import yaml

DATA = Path(__file__).with_name("data") / "allergies.yaml"


@lru_cache(maxsize=1)
def _data():
    data = yaml.safe_load(DATA.read_text(encoding="utf-8"))
    headers = sorted(data["headers"], key=len, reverse=True)
    line = re.compile(r"^[ \t]*(?:" + "|".join(map(re.escape, headers)) + r")[ \t]*[:：][ \t]*(.*)$",
                      re.IGNORECASE | re.MULTILINE)
    strip = sorted(data["strip"], key=len, reverse=True)
    return (line, {str(n).lower() for n in data["none"]}, re.compile(data["separators"], re.IGNORECASE), strip,
            tuple(data["prefixes"]), tuple(data["keep"]))


def note_allergies(text: str) -> list[str]:
    """Allergens named on the note's allergy lines, in order, without duplicates; none for
    "无" / "否认药物过敏史" / "NKDA"."""
    line, none, separators, strip, prefixes, keep = _data()
    found: list[str] = []
    for match in line.finditer(text[:200_000]):
        body = match.group(1).strip().rstrip("。.")
        if not body or body.lower() in none or body.lower().startswith(("无", "否认", "no known", "none", "nkda", "denies")):
            continue
        for part in separators.split(body):
            allergen = part.strip()
            while allergen.startswith(prefixes) and not allergen.startswith(keep):
                allergen = allergen[1:]
            for word in strip:
                allergen = re.sub(re.escape(word), " ", allergen, flags=re.IGNORECASE)
            allergen = re.sub(r"[()（）。.]", " ", allergen)
            allergen = re.sub(r"\s+", " ", allergen).strip()
            if allergen and allergen.lower() not in none and allergen not in found:
                found.append(allergen)
    return found

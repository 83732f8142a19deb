"""Deterministic train/validation split by encounter.

The side of an encounter depends only on a hash of its id (and a salt kept in the config),
never on the order of the inputs or on Python's hash seed, so rebuilding a dataset puts every
encounter on the same side, and all examples of one encounter (the note, its sections, the
record made from it) always land together. Encounters a dataset itself holds out (ACI-Bench
and MTS-Dialog ``valid`` files) stay on the validation side.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Iterable

from finetune.prompts import Example

TRAIN, VALIDATION = "train", "validation"


def bucket(encounter_id: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}\x00{encounter_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(encounter_id: str, fraction: float, salt: str, hint: str | None = None) -> str:
    if hint == VALIDATION:
        return VALIDATION
    return VALIDATION if bucket(encounter_id, salt) < fraction else TRAIN


def assign(examples: Iterable[Example], fraction: float, salt: str) -> dict[str, list[Example]]:
    """Examples by side. An encounter any of whose examples is held out by its dataset is held out whole."""
    examples = list(examples)
    pinned = {e.encounter_id for e in examples if e.split_hint == VALIDATION}
    sides: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        hint = VALIDATION if example.encounter_id in pinned else None
        sides[split_of(example.encounter_id, fraction, salt, hint)].append(example)
    return {TRAIN: sides[TRAIN], VALIDATION: sides[VALIDATION]}

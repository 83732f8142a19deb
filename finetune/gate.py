"""Every training example passes the de-identification gate (finetune/deid) before it is kept.

One surrogate map per encounter, shared by the dialogue and its note (names from both are
registered first), so a name replaced in the transcript gets the same surrogate in the answer.
Refused examples are dropped and counted; PHI counts per type go to the dataset manifest.

Knowledge-graph QA holds no patient data, yet it passes the gate too: an example the gate
would change is dropped rather than trained on, because a "surrogate" inside a drug name or
dose would teach a wrong fact (counted as ``knowledge_altered``). The citation line appended
after the gate is knowledge metadata (item id, source title); the gate reads item ids such as
``drug.acarbose`` as web addresses, so it is not passed through it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace

from finetune.prompts import Example

KNOWLEDGE_SOURCE = "knowledge-graph"


class Gate:
    def __init__(self, scrubber=None):
        from finetune.deid import Scrubber

        self.scrubber = scrubber if scrubber is not None else Scrubber()
        self.phi: dict[str, Counter] = defaultdict(Counter)      # source -> PHI type -> n replaced
        self.passed: Counter = Counter()                          # source -> examples kept
        self.refused: Counter = Counter()                         # source -> examples or whole records refused
        self.knowledge_altered: Counter = Counter()               # PHI type the gate claimed in knowledge text
        self.records_passed = 0
        self.refusals: list[dict] = []

    def _refuse(self, source: str, item_id: str, reason: str) -> None:
        self.refused[source] += 1
        self.refusals.append({"source": source, "id": item_id, "reason": reason})

    def example(self, example: Example) -> Example | None:
        from finetune.deid import PHIRefused, SurrogateMap

        surrogates = SurrogateMap(seed=example.encounter_id)
        for text in (example.source_text, example.reference):
            surrogates.remember_names(self.scrubber.name_words(text))
        try:
            source = self.scrubber.gate(example.source_text, surrogates=surrogates, where=f"{example.id} source")
            reference = self.scrubber.gate(example.reference, surrogates=surrogates, where=f"{example.id} answer")
        except PHIRefused as exc:  # the message names PHI types and counts only, never the text
            self._refuse(example.source, example.id, str(exc))
            return None
        if example.source == KNOWLEDGE_SOURCE and (source.counts or reference.counts):
            self.knowledge_altered.update(source.counts)
            self.knowledge_altered.update(reference.counts)
            self._refuse(example.source, example.id, "the gate would alter knowledge text: "
                         + ", ".join(sorted(set(source.counts) | set(reference.counts))))
            return None
        self.phi[example.source].update(source.counts)
        self.phi[example.source].update(reference.counts)
        self.passed[example.source] += 1
        return replace(example, source_text=source.text, reference=reference.text)

    def record(self, data: dict, origin: str, source: str = "records") -> dict | None:
        """A whole project record through ``deidentify_record`` (every free-text field gated, dates shifted).

        Refusals name the file and line, not the record id, which may itself be an identifier."""
        from finetune.deid import PHIRefused, deidentify_record

        try:
            clean, counts = deidentify_record(data, self.scrubber)
        except PHIRefused as exc:
            self._refuse(source, origin, str(exc))
            return None
        _drop_unscrubbed(clean)
        self.phi[source].update(counts)
        self.records_passed += 1
        return clean

    def count_passed(self, source: str, n: int) -> None:
        """Examples built only from a record that already passed ``record``."""
        self.passed[source] += n

    def summary(self, max_listed: int = 50) -> dict:
        total: Counter = Counter()
        for counts in self.phi.values():
            total.update(counts)
        return {
            "phi_replaced": dict(sorted(total.items())),
            "phi_replaced_by_source": {s: dict(sorted(c.items())) for s, c in sorted(self.phi.items())},
            "passed": dict(sorted(self.passed.items())),
            "records_passed": self.records_passed,
            "refused": dict(sorted(self.refused.items())),
            "refused_total": sum(self.refused.values()),
            "knowledge_altered_types": dict(sorted(self.knowledge_altered.items())),
            "refusals": self.refusals[:max_listed],
        }


# Record fields added for the QC office that finetune/deid does not de-identify yet: staff ids, departments
# and times (a time is a date). Training uses the notes, so they are dropped rather than passed through.
UNSCRUBBED = {"record": ("as_of", "procedures", "observations"), "encounter": ("department", "attending"),
              "medications": ("started_at",)}


def _drop_unscrubbed(record: dict) -> None:
    for key in UNSCRUBBED["record"]:
        record.pop(key, None)
    for key in UNSCRUBBED["encounter"]:
        (record.get("encounter") or {}).pop(key, None)
    for medication in record.get("medications") or []:
        for key in UNSCRUBBED["medications"]:
            medication.pop(key, None)

"""`copilot finetune reviews`: the QC office's reviewed findings, de-identified, as JSON Lines for training and
evaluating a model that judges findings (confirmed vs dismissed, and why).

The examples come from copilot (copilot.qc.office.reviews: pseudonymous ids, no people, departments or
dates); every free-text field then passes this pipeline's de-identification gate (finetune/deid), with one
surrogate map per record so a name gets the same surrogate in the evidence and in the reason. An example
whose text still shows PHI after scrubbing is refused and counted, never written.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path


def export_reviews(settings, out: Path, scrubber=None, limit: int = 100_000) -> dict:
    from copilot.db import open_database
    from copilot.qc.office.reviews import examples
    from copilot.qc.office.store import OfficeStore
    from finetune.deid import PHIRefused, Scrubber, SurrogateMap

    scrubber = scrubber if scrubber is not None else Scrubber()
    store = OfficeStore(open_database(settings.database))
    counts: Counter = Counter()
    phi: Counter = Counter()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for example in examples(store, settings.deid_secret(), limit=limit):
            surrogates = SurrogateMap(seed=example["record"])
            texts = [example[f] for f in example["text_fields"] if example.get(f)]
            for text in texts:
                surrogates.remember_names(scrubber.name_words(text))
            try:
                for field in example["text_fields"]:
                    if example.get(field):
                        result = scrubber.gate(example[field], surrogates, where=f"{example['id']} {field}")
                        example[field] = result.text
                        phi.update(result.counts)
            except PHIRefused:
                counts["refused"] += 1
                continue
            counts[example["label"]] += 1
            handle.write(json.dumps(example, ensure_ascii=False) + "\n")
    tmp.replace(out)
    return {"out": str(out), "written": counts["confirmed"] + counts["dismissed"], "confirmed": counts["confirmed"],
            "dismissed": counts["dismissed"], "refused": counts["refused"], "phi_replaced": dict(phi)}

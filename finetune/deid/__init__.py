"""De-identification gate for fine-tuning data: every record is scrubbed of PHI before training.

    scrubber = Scrubber()                                   # load once (spaCy + recognisers), reuse
    result = scrubber.gate(text, surrogates=SurrogateMap(seed="encounter-123"))
    record, counts = deidentify_record(record_dict, scrubber)

A text or record in which PHI is still detected after scrubbing raises PHIRefused. Names are
imported lazily: ``import finetune.deid`` stays cheap until the scrubber (Presidio, spaCy) is used.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Detection": "finetune.deid.scrubber",
    "PHIRefused": "finetune.deid.scrubber",
    "PHISpan": "finetune.deid.scrubber",
    "Scrubber": "finetune.deid.scrubber",
    "ScrubResult": "finetune.deid.scrubber",
    "SurrogateMap": "finetune.deid.surrogates",
    "deidentify_record": "finetune.deid.records",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return __all__

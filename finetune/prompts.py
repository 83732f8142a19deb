"""Training examples and the chat messages they become, from the templates in templates/prompts.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=1)
def prompts() -> dict:
    return yaml.safe_load((TEMPLATES / "prompts.yaml").read_text(encoding="utf-8"))


def cjk_share(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    return sum("\u4e00" <= c <= "\u9fff" for c in letters) / len(letters) if letters else 0.0


def language_of(text: str) -> str:
    return "zh" if cjk_share(text) > 0.2 else "en"


@dataclass
class Example:
    """One de-identified prompt/answer pair; ``source_text`` is the part that may be shortened."""

    id: str
    encounter_id: str
    source: str            # dataset or origin: aci-bench, mts-dialog, records, knowledge-graph
    task: str              # note | section | record_note | kg_qa
    language: str
    source_text: str
    reference: str
    fields: dict = field(default_factory=dict)
    citations: list[dict] = field(default_factory=list)
    split_hint: str | None = None  # "validation" when the dataset itself holds the encounter out
    origin: str = ""
    suffix: str = ""               # appended to the answer after the gate (a KG QA citation line)

    @property
    def answer(self) -> str:
        return self.reference + self.suffix

    def user_text(self, source_text: str | None = None) -> str:
        text = self.source_text if source_text is None else source_text
        tasks = prompts()["tasks"]
        template = tasks.get(self.task, {})
        template = template.get(self.language) or template.get("en")
        return template.format(source=text, **self.fields) if template else text

    def messages(self, source_text: str | None = None, with_answer: bool = True) -> list[dict]:
        system = prompts()["system"].get(self.language) or prompts()["system"]["en"]
        messages = [{"role": "system", "content": system.strip()},
                    {"role": "user", "content": self.user_text(source_text)}]
        if with_answer:
            messages.append({"role": "assistant", "content": self.answer})
        return messages


def omitted_marker(language: str, n: int) -> str:
    markers = prompts()["omitted"]
    return (markers.get(language) or markers["en"]).format(n=n)


def shorten_lines(text: str, keep: int, language: str) -> str:
    """Keep ``keep`` lines, alternately from the start and the end; mark what was dropped."""
    lines = text.split("\n")
    if keep >= len(lines):
        return text
    keep = max(keep, 2)
    head = lines[: (keep + 1) // 2]
    tail = lines[len(lines) - keep // 2:]
    return "\n".join(head + [omitted_marker(language, len(lines) - len(head) - len(tail))] + tail)

"""Draft a note section by section, streaming, and check each section against the source.

The engine serves one generation at a time; a note is one generation per section, so
concurrent drafts interleave by section instead of one long note blocking everyone.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from copilot.drafting.context import PatientContext
from copilot.drafting.facts import SourceFacts, unsupported
from copilot.engine.generation import GenerationRequest, GenerationResult
from copilot.records.model import Record

HERE = Path(__file__).parent
CONTEXT_CHARS = 3600
KNOWLEDGE_KINDS = {"passage", "drug", "interaction"}
SECTION_WAIT_S = 600.0  # a note that has started is finished, even when the engine queue is full
TURN_MARKERS = ("[doctor]", "[patient]")  # a model that starts writing dialogue has stopped writing the note


class DraftError(ValueError):
    """The request cannot be drafted as given (a 400 for the API)."""


@lru_cache(maxsize=1)
def note_types() -> dict:
    return yaml.safe_load((HERE / "note_types.yaml").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _templates():
    env = Environment(loader=FileSystemLoader(HERE / "prompts"), undefined=StrictUndefined, autoescape=False,
                      keep_trailing_newline=False)
    return env.get_template("section.j2"), (HERE / "prompts" / "system.txt").read_text(encoding="utf-8").strip()


@dataclass
class DraftRequest:
    transcript: str | None = None
    record: Record | None = None
    note_type: str = "soap"
    sections: list[str] | None = None
    max_new_tokens: int | None = None

    def plan(self) -> tuple[dict, list[dict]]:
        types = note_types()
        if self.note_type not in types:
            raise DraftError(f"unknown note_type {self.note_type!r}; choose one of {', '.join(types)}")
        spec = types[self.note_type]
        sections = spec["sections"]
        if self.sections is not None:
            known = {s["id"] for s in sections}
            unknown = [s for s in self.sections if s not in known]
            if unknown:
                raise DraftError(f"unknown sections for {self.note_type}: {', '.join(unknown)}; "
                                 f"known: {', '.join(s['id'] for s in sections)}")
            sections = [s for s in sections if s["id"] in set(self.sections)]
        if not sections:
            raise DraftError("no sections to draft")
        if not (self.transcript and self.transcript.strip()) and self.record is None:
            raise DraftError("give a transcript, a record, or both")
        return spec, sections


@dataclass
class Metrics:
    started: float = field(default_factory=time.monotonic)
    first_token: float | None = None
    tokens: int = 0
    decode_s: float = 0.0
    prompt_tokens: int = 0

    def as_dict(self) -> dict:
        elapsed = time.monotonic() - self.started
        return {"tokens": self.tokens, "prompt_tokens": self.prompt_tokens,
                "ttft_ms": round((self.first_token - self.started) * 1000, 1) if self.first_token else None,
                "tokens_per_s": round(self.tokens / self.decode_s, 2) if self.decode_s > 0 else None,
                "elapsed_ms": round(elapsed * 1000, 1)}


class Drafter:
    """Built once per app; ``draft`` yields (event, data) pairs for the SSE stream."""

    def __init__(self, engine, graph=None, retriever=None):
        self.engine = engine
        self.graph = graph
        self.retriever = retriever

    def draft(self, request: DraftRequest, cancel: threading.Event | None = None) -> Iterator[tuple[str, dict]]:
        spec, sections = request.plan()
        context = PatientContext(request.transcript, request.record)
        source = SourceFacts(context.texts, self.graph)
        metrics = Metrics()
        yield "start", {"note_type": request.note_type, "sections": [{"id": s["id"], "title": s["title"]} for s in sections]}
        done_sections, citations, seen = [], [], set()
        for first, section in zip([True] + [False] * len(sections), sections):
            excerpts = context.select(section["query"], CONTEXT_CHARS)
            references = self._references(section, excerpts) if section.get("knowledge") else []
            yield "section_start", {"section": section["id"], "title": section["title"]}
            lead = section.get("lead", "")
            pieces = [lead] if lead else []
            if lead:
                yield "token", {"section": section["id"], "text": lead}
            result = None
            # The engine sets the event it is given when a stream ends, so each section gets its own,
            # tied to the draft's.
            section_cancel = threading.Event()
            generation = self._request(spec, section, excerpts, references, request)
            for item in self.engine.stream(generation, section_cancel, wait_s=0 if first else SECTION_WAIT_S):
                if cancel is not None and cancel.is_set():
                    section_cancel.set()
                if isinstance(item, GenerationResult):
                    result = item
                    break
                if metrics.first_token is None:
                    metrics.first_token = time.monotonic()
                pieces.append(item)
                yield "token", {"section": section["id"], "text": item}
            text = (lead + result.text if result is not None else "".join(pieces)).strip()
            if result is not None:
                metrics.tokens += result.metrics.generated_tokens
                metrics.prompt_tokens += result.metrics.prompt_tokens
                metrics.decode_s += max(result.metrics.total_s - result.metrics.ttft_s - result.metrics.queue_wait_s, 0.0)
            cut = result is not None and result.finish_reason == "length"
            marks = unsupported(text, source, self.graph, truncated=True if cut else None)
            used = [{"id": e.id, "kind": "patient", "title": e.title} for e in excerpts]
            used += [{"id": r["id"], "kind": "knowledge", "title": r["title"], "source": r["source"]} for r in references]
            for c in used:
                if c["id"] not in seen:
                    seen.add(c["id"])
                    citations.append(c)
            entry = {"section": section["id"], "title": section["title"], "text": text, "unsupported": marks,
                     "citations": [c["id"] for c in used]}
            done_sections.append(entry)
            yield "section_end", entry
            if (result is not None and result.finish_reason == "cancelled") or (cancel is not None and cancel.is_set()):
                break
        note = "\n\n".join(f"{s['title']}\n\n{s['text']}" for s in done_sections)
        flat = []
        offset = 0
        for s in done_sections:
            body_start = offset + len(s["title"]) + 2
            flat += [dict(m, section=s["section"], start=m["start"] + body_start, end=m["end"] + body_start)
                     for m in s["unsupported"]]
            offset = body_start + len(s["text"]) + 2
        yield "done", {"note": note, "sections": [{"id": s["section"], "title": s["title"], "text": s["text"],
                                                   "unsupported": s["unsupported"]} for s in done_sections],
                       "unsupported": flat, "citations": citations, "metrics": metrics.as_dict()}

    def _references(self, section: dict, excerpts) -> list[dict]:
        if self.retriever is None:
            return []
        query = " ".join(e.text for e in excerpts)[-1500:]
        found = self.retriever.search(query, k=3, kinds=KNOWLEDGE_KINDS)
        return [{"id": h["id"], "title": h["source"].get("title", h["id"]), "source": h["source"],
                 "text": h["text"][:400]} for h in found]

    def _request(self, spec, section, excerpts, references, request: DraftRequest) -> GenerationRequest:
        template, system = _templates()
        user = template.render(note_label=spec["label"], section=section, language=spec.get("language", "en"),
                               excerpts=[{"id": e.id, "title": e.title, "text": e.text} for e in excerpts],
                               references=references)
        others = [s["title"] for s in note_types()[request.note_type]["sections"] if s["id"] != section["id"]]
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        prompt = self.engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True) + section.get("lead", "")
        return GenerationRequest(prompt=prompt, max_new_tokens=request.max_new_tokens or section.get("max_new_tokens", 200),
                                 repetition_penalty=float(spec.get("repetition_penalty", 1.0)),
                                 stop=[f"\n{t}" for t in others] + [f"{t}:" for t in others] + list(TURN_MARKERS))

"""Detect PHI, replace it with surrogates, and refuse text in which PHI is still found.

Detection is Presidio (spaCy NER + pattern recognisers from recognizers.yaml); on top of it the
scrubber filters spaCy's guesses against clinical vocabulary, retypes phones after "fax", finds
the other mentions of every detected name, and resolves overlaps. Logs carry counts and offsets,
never the original strings.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple

import regex

from finetune.deid.recognizers import (CONFIG_FILE, CREDENTIALS, SPACY_RECOGNIZER, TITLES, WORD, Config,
                                       build_analyzer, refine_ner_span)
from finetune.deid.surrogates import SurrogateMap

log = logging.getLogger(__name__)

PROPAGATION_SCORE = 0.75


class Detection(NamedTuple):
    start: int
    end: int
    type: str
    score: float


class PHISpan(NamedTuple):
    start: int
    end: int
    type: str


@dataclass
class ScrubResult:
    text: str
    counts: dict[str, int] = field(default_factory=dict)
    spans: list[PHISpan] = field(default_factory=list)            # replaced spans, offsets in the ORIGINAL text
    surrogate_spans: list[PHISpan] = field(default_factory=list)  # where the surrogates sit in ``text``


class PHIRefused(ValueError):
    """PHI was still detected after scrubbing; the text must not be used for training."""

    def __init__(self, types: dict[str, int] | Iterable[str], where: str = "", spans: list[PHISpan] | None = None):
        self.counts = dict(types) if isinstance(types, dict) else dict(Counter(types))
        self.types = sorted(self.counts)
        self.where = where
        self.spans = list(spans or [])  # offsets in the scrubbed text
        detail = ", ".join(f"{t} x{n}" for t, n in sorted(self.counts.items()))
        super().__init__(f"residual PHI after scrubbing{' in ' + where if where else ''}: {detail}")


_TRAILING = ".,;:!?"
_TRIMMED_TYPES = {"URL", "EMAIL", "IP", "PHONE", "FAX", "MRN", "ACCOUNT", "ID"}


def _trim(text: str, start: int, end: int, type_: str) -> tuple[int, int]:
    """Drop sentence punctuation and unbalanced brackets a recogniser took in at the edges."""
    while end > start and text[end - 1].isspace():
        end -= 1
    while start < end and text[start].isspace():
        start += 1
    if type_ in _TRIMMED_TYPES:
        while end > start and text[end - 1] in _TRAILING:
            end -= 1
    if type_ in ("EMAIL", "URL"):  # Presidio's \w takes in the Chinese label before it (邮箱xiayu@...)
        while start < end and not text[start].isascii():
            start += 1
        while end > start and not text[end - 1].isascii():
            end -= 1
    span = text[start:end]
    if span.startswith("(") and ")" not in span:
        start += 1
    if span.endswith(")") and "(" not in span:
        end -= 1
    return start, end


def _ascii_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def _cuts_token(text: str, start: int, end: int) -> bool:
    """The span starts or ends inside a run of ASCII letters and digits."""
    return ((end < len(text) and _ascii_alnum(text[end]) and _ascii_alnum(text[end - 1]))
            or (start > 0 and _ascii_alnum(text[start - 1]) and _ascii_alnum(text[start])))


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text to scrub must be str, not {type(text).__name__}")
    return text


class Scrubber:
    """Load once (spaCy + recognisers, ~seconds) and reuse for every record.

    ``score_threshold``: detections scoring lower are neither replaced nor counted.
    ``gate_threshold``: the threshold of the re-detection in :meth:`gate` (default: the same).
    ``disabled``: recogniser names (see recognizers.yaml, "spacy_ner", Presidio class names) or PHI
    types to leave out.
    """

    def __init__(self, config_path: str | Path = CONFIG_FILE, *, score_threshold: float | None = None,
                 gate_threshold: float | None = None, disabled: Iterable[str] = ()):
        self._analyzer, self._config = build_analyzer(Path(config_path), frozenset(disabled))
        self.score_threshold = self._config.score_threshold if score_threshold is None else float(score_threshold)
        self.gate_threshold = self.score_threshold if gate_threshold is None else float(gate_threshold)
        self._retype = [
            (rule["from"], rule["to"], int(rule.get("window", 60)),
             regex.compile(rule["before"], regex.IGNORECASE),
             regex.compile(rule["unless"], regex.IGNORECASE) if rule.get("unless") else None)
            for rule in self._config.data.get("retype") or []
        ]

    @property
    def config(self) -> Config:
        return self._config

    @property
    def types(self) -> tuple[str, ...]:
        return self._config.types

    # ------------------------------------------------------------------ detection
    def detect(self, text: str, *, threshold: float | None = None,
               known_names: Iterable[str] = ()) -> list[Detection]:
        """PHI spans in ``text`` (non-overlapping, sorted); ``known_names``: name words seen elsewhere."""
        text = _check_text(text)
        if not text.strip():
            return []
        threshold = self.score_threshold if threshold is None else threshold
        lex = self._config.lexicon
        found: list[Detection] = []
        artifacts = self._analyzer.nlp_engine.process_text(text, "en")
        for result in self._analyzer.analyze(text=text, language="en", nlp_artifacts=artifacts):
            start, end, type_ = result.start, result.end, result.entity_type
            if (result.recognition_metadata or {}).get("recognizer_name") == SPACY_RECOGNIZER:
                refined = refine_ner_span(text, start, end, type_, lex)
                if refined is None:
                    continue
                start, end = refined
            if type_ == "NAME" and self._not_a_person(text, start, end):
                continue
            if type_ in ("ID", "ACCOUNT") and _cuts_token(text, start, end):
                continue  # "BA2024052" inside 病案号 BA2024052006: a fragment, not a DEA number
            type_ = self._retyped(text, start, type_)
            start, end = _trim(text, start, end, type_)
            if result.score >= threshold and end > start:
                found.append(Detection(start, end, type_, float(result.score)))
        found = self._resolve(found)
        found += self._other_mentions(text, found, known_names)
        found = self._extend_names(text, self._resolve(found), known_names)
        return self._resolve(found)

    def _not_a_person(self, text: str, start: int, end: int) -> bool:
        """The span, with up to two words before it, is a listed brand or eponym (Dr Pepper)."""
        phrases = self._config.data.get("not_name_phrases") or ()
        window = text[max(0, start - 6):end].lower()
        return any(window.endswith(p) for p in phrases)

    def _extend_names(self, text: str, detections: list[Detection], known: Iterable[str]) -> list[Detection]:
        """Take in the surname after a detected given name: "christina cooper" when only "christina" was found.

        The next word joins when it is a name word already found in this text (or record), or a
        frequent surname after a given name; stop words and clinical vocabulary never do.
        """
        lex = self._config.lexicon
        names = self._name_words(text, detections) | {w.lower() for w in known}
        out = []
        for d in detections:
            if d.type == "NAME":
                last = WORD.findall(text[d.start:d.end])
                nxt = regex.match(r"[ \t]([^\W\d_]+(?:['’-][^\W\d_]+)?)\b", text[d.end:d.end + 40])
                if last and nxt and not lex.is_non_name(nxt.group(1)):
                    word = nxt.group(1).lower()
                    after_given = last[-1].lower() in lex.given_names
                    same_case = nxt.group(1).islower() == text[d.start:d.end].islower()
                    if same_case and (word in names or (after_given and word in lex.surnames)):
                        d = Detection(d.start, d.end + nxt.end(), d.type, d.score)
                prev = regex.search(r"\b([^\W\d_]+)[ \t]$", text[max(0, d.start - 40):d.start])
                if last and prev and not lex.is_non_name(prev.group(1)) and lex.is_given_name(prev.group(1)) \
                        and last[0].lower() not in lex.given_names \
                        and prev.group(1).islower() == text[d.start:d.end].islower():
                    d = Detection(d.start - (len(prev.group(0))), d.end, d.type, d.score)  # "Bruce" + "Ward"
            out.append(d)
        return out

    def _retyped(self, text: str, start: int, type_: str) -> str:
        for source, target, window, before, unless in self._retype:
            if type_ != source:
                continue
            preceding = text[max(0, start - window):start]
            if before.search(preceding) and not (unless and unless.search(preceding)):
                return target
        return type_

    def name_words(self, text: str) -> set[str]:
        """Lower-cased words of the names detected in ``text`` (to find them in other fields)."""
        return self._name_words(text, self.detect(text))

    def _name_words(self, text: str, detections: list[Detection]) -> set[str]:
        lex = self._config.lexicon
        words = set()
        for d in detections:
            if d.type != "NAME":
                continue
            for word in WORD.findall(text[d.start:d.end]):
                w = word.lower()
                if len(w) >= 2 and not lex.is_non_name(w) and w not in TITLES and w not in CREDENTIALS:
                    words.add(w)
        return words

    def _other_mentions(self, text: str, detections: list[Detection], known: Iterable[str]) -> list[Detection]:
        """Every other mention of a detected name word: "Maria Alvarez" found makes "ALVAREZ" and "alvarez" PHI.

        Words that are also dictionary words ("Grace", "Bill") are matched only when capitalised.
        """
        lex = self._config.lexicon
        words = self._name_words(text, detections) | {w.lower() for w in known if not lex.is_non_name(w)}
        if not words:
            return []
        found = []
        plain = sorted(w for w in words if w not in lex.english_words and len(w) > 2)
        capitalised = sorted(w for w in words if w in lex.english_words or len(w) <= 2)
        patterns = []
        if plain:
            patterns.append(regex.compile(r"(?<![\w'’-])(?:" + "|".join(map(regex.escape, plain)) + r")(?![\w-])",
                                          regex.IGNORECASE))
        if capitalised:
            patterns.append(regex.compile(r"(?<![\w'’-])(?:" + "|".join(
                regex.escape(w.capitalize()) + "|" + regex.escape(w.upper()) for w in capitalised) + r")(?![\w-])"))
        for pattern in patterns:
            found.extend(Detection(m.start(), m.end(), "NAME", PROPAGATION_SCORE) for m in pattern.finditer(text))
        return found

    @staticmethod
    def _resolve(detections: list[Detection]) -> list[Detection]:
        """Non-overlapping spans: higher score, then longer span wins; same-type overlaps merge."""
        kept: list[Detection] = []
        for d in sorted(detections, key=lambda d: (-d.score, -(d.end - d.start), d.start)):
            clashes = [k for k in kept if k.start < d.end and d.start < k.end]
            if not clashes:
                kept.append(d)
            elif all(k.type == d.type for k in clashes):
                for k in clashes:
                    kept.remove(k)
                kept.append(Detection(min([d.start] + [k.start for k in clashes]),
                                      max([d.end] + [k.end for k in clashes]), d.type,
                                      max([d.score] + [k.score for k in clashes])))
        return sorted(kept, key=lambda d: d.start)

    # ------------------------------------------------------------------ replacement
    def scrub(self, text: str, surrogates: SurrogateMap | None = None) -> ScrubResult:
        """``text`` with every detected PHI span replaced by a consistent surrogate."""
        text = _check_text(text)
        if not text:
            return ScrubResult(text="")
        if surrogates is None:
            surrogates = SurrogateMap(seed=hashlib.sha256(text.encode("utf-8")).hexdigest())
        detections = self.detect(text, known_names=surrogates.name_tokens)
        given = self._config.lexicon.given_names
        pieces, spans, placed, cursor, offset = [], [], [], 0, 0
        for d in detections:
            surrogate = surrogates.replace(d.type, text[d.start:d.end], given_names=given)
            pieces.append(text[cursor:d.start])
            offset += d.start - cursor
            pieces.append(surrogate)
            spans.append(PHISpan(d.start, d.end, d.type))
            placed.append(PHISpan(offset, offset + len(surrogate), d.type))
            offset += len(surrogate)
            cursor = d.end
        pieces.append(text[cursor:])
        counts = dict(sorted(Counter(s.type for s in spans).items()))
        if counts:
            log.debug("scrubbed %d PHI spans: %s", len(spans), counts)
        return ScrubResult(text="".join(pieces), counts=counts, spans=spans, surrogate_spans=placed)

    def residual(self, result: ScrubResult, known_names: Iterable[str] = ()) -> list[Detection]:
        """Detections in scrubbed text that are not (only) an inserted surrogate."""
        lex = self._config.lexicon
        leftover = []
        for d in self.detect(result.text, threshold=self.gate_threshold, known_names=known_names):
            covered = [False] * (d.end - d.start)
            for s in result.surrogate_spans:
                for i in range(max(s.start, d.start), min(s.end, d.end)):
                    covered[i - d.start] = True
            if all(covered):
                continue
            outside = "".join(c if not cov else " " for c, cov in zip(result.text[d.start:d.end], covered))
            if any(covered) and all(lex.is_non_name(w) for w in WORD.findall(outside)) \
                    and not any(ch.isdigit() for ch in outside):
                continue  # "Dr." or a comma next to a surrogate name is not PHI
            leftover.append(d)
        return leftover

    def gate(self, text: str, surrogates: SurrogateMap | None = None, *, where: str = "") -> ScrubResult:
        """Scrub, then re-detect on the result; raise PHIRefused if anything but a surrogate is found."""
        text = _check_text(text)
        if surrogates is None:
            surrogates = SurrogateMap(seed=hashlib.sha256(text.encode("utf-8")).hexdigest())
        result = self.scrub(text, surrogates)
        if not result.text:
            return result
        known = surrogates.name_tokens
        leftover = self.residual(result, known_names=known)
        if leftover:
            log.warning("refused%s: residual PHI %s", f" {where}" if where else "",
                        dict(Counter(d.type for d in leftover)))
            raise PHIRefused(Counter(d.type for d in leftover), where,
                             [PHISpan(d.start, d.end, d.type) for d in leftover])
        return result

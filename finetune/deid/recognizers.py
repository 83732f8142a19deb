"""Build the Presidio analyzer for clinical text from recognizers.yaml.

The YAML holds every pattern, context word and word list; this module holds only what cannot be
data: the validators a match must pass, the filter applied to spaCy's guesses, and the wiring into
Presidio (installed spaCy package, predefined recognisers retyped to the scrubber's PHI types).
"""

from __future__ import annotations

import importlib.util
import logging
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Callable, Optional

import regex
import yaml
from presidio_analyzer import (AnalyzerEngine, EntityRecognizer, Pattern, PatternRecognizer, RecognizerRegistry,
                               RecognizerResult)
from presidio_analyzer import predefined_recognizers as predefined
from presidio_analyzer.predefined_recognizers import EmailRecognizer, SpacyRecognizer

from finetune.deid.identifiers import cn_resident_id_valid
from finetune.deid.nlp import InstalledSpacyNlpEngine

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
CONFIG_FILE = HERE / "recognizers.yaml"
SPACY_RECOGNIZER = "spacy_ner"
WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", re.UNICODE)
MACRO = re.compile(r"<<([A-Z_0-9]+)>>")
TITLES = {"dr", "doctor", "mr", "mrs", "ms", "mx", "miss", "prof", "professor", "sir", "madam"}
CREDENTIALS = {"md", "do", "rn", "np", "pa", "pa-c", "phd", "pharmd", "dds", "dmd", "lpn", "cna", "msw", "lcsw",
               "aprn", "crna", "mbbs", "bsn", "fnp", "dnp", "rph", "jr", "sr", "ii", "iii", "iv"}


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Lexicon:
    """Word lists the validators and the NER filter consult (all lower case)."""

    not_names: frozenset[str]
    eponym_heads: frozenset[str]
    not_locations: frozenset[str]
    not_facility_prefixes: frozenset[str]
    given_names: dict[str, str]        # lower-cased given name -> "F" or "M"
    stop_words: frozenset[str]
    english_words: frozenset[str]
    clinical_terms: frozenset[str]
    surnames: frozenset[str] = frozenset()
    medical_suffixes: tuple[str, ...] = ()
    drug_cues: frozenset[str] = frozenset()

    def is_non_name(self, word: str) -> bool:
        w = word.lower().strip(".,'’")
        return (w in self.stop_words or w in self.not_names or w in self.clinical_terms or w in TITLES
                or w in CREDENTIALS or len(w) < 2)

    def is_given_name(self, word: str) -> bool:
        return word.lower() in self.given_names and not self.is_non_name(word)


# ---------------------------------------------------------------------------------------- validators
# Presidio's convention: True sets the score to 1.0, False drops the match, None keeps the score.

def _lowercase_name(text: str, lex: Lexicon) -> Optional[bool]:
    return False if lex.is_non_name(text) else None


def _given_name(text: str, lex: Lexicon) -> Optional[bool]:
    return None if lex.is_given_name(text) else False


def _name_like(text: str, lex: Lexicon) -> Optional[bool]:
    """Reject "I am Concerned", "Patient: Stable": words that are all stop or dictionary words, no given name."""
    words = [w for w in WORD.findall(text) if len(w) > 1]
    if not words or lex.is_non_name(words[0]):
        return False
    if not any(lex.is_given_name(w) for w in words) and all(_dictionary_word(w.lower(), lex) for w in words):
        return False
    return None


def _given_name_first(text: str, lex: Lexicon) -> Optional[bool]:
    words = [w for w in re.split(r"[ \t]+", text) if not re.fullmatch(r"[A-Za-z]\.", w)]
    if not words or not lex.is_given_name(words[0]) or any(lex.is_non_name(w) for w in words[1:]):
        return False
    return None


def _given_name_addressed(text: str, lex: Lexicon) -> Optional[bool]:
    """A listed given name between a greeting and a comma is a name even when it is also an
    English word ("hi , will ,"); role words ("hi , doctor ,") are not."""
    word = text.lower()
    if word in lex.given_names and word not in lex.not_names and word not in TITLES:
        return None
    return False


def _given_name_pair(text: str, lex: Lexicon) -> Optional[bool]:
    words = [w for w in re.split(r"[ \t]+", text) if not re.fullmatch(r"[A-Z]\.", w)]
    first, last = words[0], words[-1]
    if not lex.is_given_name(first) or lex.is_non_name(last) or last.lower() in lex.eponym_heads:
        return False
    if first.lower() in lex.english_words and last.lower() in lex.english_words:
        return False  # "Frank Blood", "Will Call": two dictionary words are more likely prose
    return None


def _numeric_date(text: str, lex: Lexicon) -> Optional[bool]:
    parts = [int(p) for p in re.split(r"[/.-]", text)]
    if len(parts) == 2:
        return None if 1 <= parts[0] <= 12 and 1 <= parts[1] <= 31 else False
    a, b, year = parts
    year = year if year >= 100 else 2000 + year
    for month, day in ((a, b), (b, a)):
        try:
            date(year, month, day)
            return None
        except ValueError:
            continue
    return False


def _numeric_date_ymd(text: str, lex: Lexicon) -> Optional[bool]:
    year, month, day = (int(p) for p in re.split(r"[/.．-]", text))
    try:
        date(year, month, day)
        return None
    except ValueError:
        return False


_ABBREVIATED_MONTHS = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"}


def _month_date(text: str, lex: Lexicon) -> Optional[bool]:
    words = re.findall(r"[A-Za-z]+", text)
    month = next((w for w in words if w.lower().rstrip(".") in _ABBREVIATED_MONTHS or len(w) > 3), "")
    has_year = bool(re.search(r"\d{4}", text))
    has_ordinal = bool(re.search(r"\d(?:st|nd|rd|th)\b", text, re.I))
    if month.islower() and month.lower() in _ABBREVIATED_MONTHS and not (has_year or has_ordinal):
        return False  # "you may 2", "mar 5": lower-case three-letter words need a year or an ordinal
    return None


def _cn_resident_id(text: str, lex: Lexicon) -> Optional[bool]:
    return True if cn_resident_id_valid(text) else None


def _facility(text: str, lex: Lexicon) -> Optional[bool]:
    first = text.split()[0].lower()
    return False if first in lex.not_facility_prefixes or first in lex.stop_words else None


def _place(text: str, lex: Lexicon) -> Optional[bool]:
    lowered = text.lower()
    if lowered in lex.not_locations or lowered.split()[0] in lex.stop_words or lex.is_non_name(lowered):
        return False
    return None


VALIDATORS: dict[str, Callable[[str, Lexicon], Optional[bool]]] = {
    "lowercase_name": _lowercase_name,
    "given_name": _given_name,
    "given_name_pair": _given_name_pair,
    "given_name_addressed": _given_name_addressed,
    "given_name_first": _given_name_first,
    "name_like": _name_like,
    "numeric_date": _numeric_date,
    "month_date": _month_date,
    "numeric_date_ymd": _numeric_date_ymd,
    "cn_resident_id": _cn_resident_id,
    "facility": _facility,
    "place": _place,
}


class ClinicalPatternRecognizer(PatternRecognizer):
    """A PatternRecognizer with its own regex flags and an optional named validator."""

    def __init__(self, *, validator: Callable[[str, Lexicon], Optional[bool]] | None, lexicon: Lexicon, **kwargs):
        super().__init__(**kwargs)
        self._validator = validator
        self._lexicon = lexicon

    def validate_result(self, pattern_text: str) -> Optional[bool]:
        return self._validator(pattern_text, self._lexicon) if self._validator else None


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recogniser with tldextract's bundled suffix list: never fetched over HTTP."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        import tldextract

        self._extract = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)

    def validate_result(self, pattern_text: str) -> bool:
        return self._extract(pattern_text).fqdn != ""


OVERRIDES = {"EmailRecognizer": OfflineEmailRecognizer}

HAN = r"\u3400-\u4dbf\u4e00-\u9fff"
HAN_CHAR = re.compile(f"[{HAN}]")


def _jieba_person(candidate: str) -> bool:
    """The candidate does not open with a word of jieba's dictionary other than a person's name:
    患者高血压 and 申请医生 start with words; 徐文静 cuts as 徐 + 文静, a surname and a given name."""
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    first = next(iter(jieba.posseg.cut(candidate)))
    return len(first.word) == 1 or first.flag.startswith("nr")


class ChineseNameRecognizer(EntityRecognizer):
    """Chinese personal names: a listed surname plus one or two given characters next to a cue.

    Regexes alone cannot tell where a name ends in unspaced text (程立查房), so the candidate is
    cut at characters that start the next word and, after a weak cue, checked with jieba.
    """

    def __init__(self, conf: dict, base: Path, type_: str = "NAME"):
        lines = (base / conf["surnames_file"]).read_text(encoding="utf-8").splitlines()
        surnames = sorted({s.strip() for s in lines if s.strip() and not s.startswith("#")}, key=len, reverse=True)
        self._score = float(conf.get("score", 0.85))
        self._not_second = frozenset(conf.get("not_second_given", ""))
        self._not_after = tuple(conf.get("not_after_surname") or ())
        alt = "|".join
        surname = f"(?:{alt(map(re.escape, surnames))})"
        self._strong = re.compile(f"(?:{alt(map(re.escape, conf['strong_cues']))})[ \t]*[：:]?[ \t]*"
                                  f"(?={surname})")
        self._weak = re.compile(f"(?:{alt(map(re.escape, conf['weak_cues']))})(?={surname})")
        self._bare = re.compile(f"(?:^|(?<=[^{HAN}]|科))(?={surname}[{HAN}]{{1,2}}(?:{alt(map(re.escape, conf['following_cues']))}))",
                                re.M)
        self._surname = re.compile(surname)
        self._following = tuple(conf["following_cues"])
        super().__init__(supported_entities=[type_], name="chinese_name", supported_language="en")

    def load(self) -> None:
        pass

    def _candidate(self, text: str, at: int) -> tuple[int, int] | None:
        m = self._surname.match(text, at)
        if not m:
            return None
        given = m.end()
        if any(text.startswith(w, given) for w in self._not_after) or not HAN_CHAR.match(text[given:given + 1]):
            return None
        end = given + 1
        if HAN_CHAR.match(text[end:end + 1]) and text[end] not in self._not_second \
                and not any(text.startswith(f, end) for f in self._following):
            end += 1
        return at, end

    def find(self, text: str) -> list[tuple[int, int]]:
        spans: dict[tuple[int, int], None] = {}
        for pattern, check in ((self._strong, False), (self._weak, True), (self._bare, True)):
            for cue in pattern.finditer(text):
                span = self._candidate(text, cue.end())
                while span and (not check or _jieba_person(text[span[0]:span[1]])):
                    spans[span] = None
                    # a list after a strong cue: 参加人员：沈浩、韩雪
                    span = self._candidate(text, span[1] + 1) if not check and text[span[1]:span[1] + 1] == "、" else None
        return list(spans)

    def analyze(self, text, entities, nlp_artifacts=None):
        if not HAN_CHAR.search(text):
            return []
        return [RecognizerResult(self.supported_entities[0], s, e, self._score) for s, e in self.find(text)]


# ---------------------------------------------------------------------------------------- config

@dataclass
class Config:
    data: dict
    lexicon: Lexicon
    types: tuple[str, ...]
    score_threshold: float


def _words(values) -> frozenset[str]:
    return frozenset(str(v).lower() for v in values or ())


def _expand(pattern: str, macros: dict[str, str]) -> str:
    for _ in range(6):
        names = MACRO.findall(pattern)
        if not names:
            return pattern
        unknown = sorted({n for n in names if n not in macros})
        if unknown:
            raise ConfigError(f"unknown macro(s) {unknown} in recogniser pattern {pattern[:60]!r}")
        pattern = MACRO.sub(lambda m: macros[m.group(1)], pattern)
    raise ConfigError(f"macros nest too deeply in {pattern[:60]!r}")


def _project_file(relative: str) -> Path | None:
    spec = importlib.util.find_spec("knowledge")
    if spec is None or not spec.submodule_search_locations:
        log.warning("knowledge package not importable; %s is not excluded from name guesses", relative)
        return None
    path = Path(list(spec.submodule_search_locations)[0]).parent / relative
    if not path.is_file():
        log.warning("%s not found; its terms are not excluded from name guesses", path)
        return None
    return path


def _knowledge_terms(files: list[str], whole_only: list[str]) -> frozenset[str]:
    """Clinical vocabulary that is not PHI though often capitalised: every generic, brand and
    synonym of the knowledge base's drugs and drug classes (and their longer words), and the
    diagnosis lexicon's terms (whole terms only: "Parkinson" in "Parkinson disease" stays a
    possible surname)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    terms: set[str] = set()
    for relative in files:
        path = _project_file(relative)
        if path is None:
            continue
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}
        for item in data.get("items", []):
            for name in [item.get("name"), *(item.get("brands") or []), *(item.get("synonyms") or [])]:
                if isinstance(name, str):
                    terms.add(name.lower())
                    terms.update(w.lower() for w in WORD.findall(name) if len(w) > 3)
    for relative in whole_only:
        path = _project_file(relative)
        if path is None:
            continue
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}
        for entry in data.get("conditions", []):
            terms.update(t.lower() for t in entry.get("terms", []) if isinstance(t, str) and " " in t)
    return frozenset(terms)


def _english_words(nlp) -> frozenset[str]:
    """Dictionary words known to the pipeline's lemmatizer (WordNet lemmas), if it has the table."""
    try:
        table = nlp.get_pipe("lemmatizer").lookups.get_table("lemma_index")
    except (KeyError, ValueError, AttributeError):
        return frozenset()
    words: set[str] = set()
    for values in table.values():
        words.update(values)
    return frozenset(words)


def load_config(path: Path = CONFIG_FILE) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read recogniser config {path}: {exc}") from None
    for key in ("types", "spacy", "recognizers", "macros"):
        if key not in (data or {}):
            raise ConfigError(f"{path}: missing key {key!r}")
    return data


def build_lexicon(data: dict, nlp, base: Path) -> Lexicon:
    not_names: set[str] = set()
    for values in (data.get("not_names") or {}).values():
        not_names |= _words(values)
    given: dict[str, str] = {}
    if data.get("given_names_file"):
        for line in (base / data["given_names_file"]).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                name, _, gender = line.partition("\t")
                given[name.strip().lower()] = gender.strip().upper() or "F"
    surnames: frozenset[str] = frozenset()
    if data.get("surnames_file"):
        lines = (base / data["surnames_file"]).read_text(encoding="utf-8").splitlines()
        surnames = frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))
    return Lexicon(
        not_names=frozenset(not_names),
        surnames=surnames,
        eponym_heads=_words(data.get("eponym_heads")),
        not_locations=_words(data.get("not_locations")),
        not_facility_prefixes=_words(data.get("not_facility_prefixes")),
        given_names=given,
        stop_words=frozenset(w.lower() for w in nlp.Defaults.stop_words),
        english_words=_english_words(nlp),
        clinical_terms=_knowledge_terms(list(data.get("knowledge_term_files") or []),
                                        list(data.get("knowledge_whole_term_files") or [])),
        medical_suffixes=tuple(sorted(_words(data.get("medical_suffixes")), key=len, reverse=True)),
        drug_cues=_words(data.get("drug_cues")),
    )


def build_analyzer(path: Path = CONFIG_FILE, disabled: frozenset[str] = frozenset()) -> tuple[AnalyzerEngine, Config]:
    """The AnalyzerEngine and its config; ``disabled`` names recognisers (or PHI types) to leave out."""
    data = load_config(path)
    types = tuple(data["types"])
    spacy_conf = data["spacy"]
    engine = InstalledSpacyNlpEngine(spacy_conf["package"], spacy_conf["entities"], spacy_conf.get("disable"),
                                     default_score=float(spacy_conf.get("score", 0.6)))
    engine.load()
    lexicon = build_lexicon(data, engine.nlp["en"], Path(path).parent)
    macros = {k: str(v) for k, v in data["macros"].items()}

    def wanted(name: str, type_: str) -> bool:
        if type_ not in types:
            raise ConfigError(f"recogniser {name!r} yields {type_!r}, not one of {list(types)}")
        return name not in disabled and type_ not in disabled

    recognizers = []
    ner_types = sorted(set(spacy_conf["entities"].values()))
    if SPACY_RECOGNIZER not in disabled:
        ner_types = [t for t in ner_types if wanted(SPACY_RECOGNIZER, t)]
        if ner_types:
            recognizers.append(SpacyRecognizer(supported_entities=ner_types, name=SPACY_RECOGNIZER,
                                               ner_strength=float(spacy_conf.get("score", 0.6))))
    for entry in data.get("presidio") or []:
        cls_name, type_ = entry["class"], entry["type"]
        if not wanted(cls_name, type_):
            continue
        cls = OVERRIDES.get(cls_name) or getattr(predefined, cls_name, None)
        if cls is None:
            raise ConfigError(f"Presidio has no recogniser class {cls_name!r}")
        recognizers.append(cls(supported_entity=type_, **(entry.get("args") or {})))
    for entry in data["recognizers"]:
        name, type_ = entry["name"], entry["type"]
        if not wanted(name, type_):
            continue
        validator = None
        if entry.get("validator"):
            if entry["validator"] not in VALIDATORS:
                raise ConfigError(f"recogniser {name!r}: unknown validator {entry['validator']!r}")
            validator = VALIDATORS[entry["validator"]]
        flags = regex.DOTALL | regex.MULTILINE
        if not entry.get("case_sensitive"):
            flags |= regex.IGNORECASE
        patterns = []
        for i, raw in enumerate(entry["patterns"]):
            expanded = _expand(raw, macros)
            try:
                regex.compile(expanded, flags)
            except regex.error as exc:
                raise ConfigError(f"recogniser {name!r} pattern {i}: {exc}") from None
            patterns.append(Pattern(name=f"{name}:{i}", regex=expanded, score=float(entry["score"])))
        recognizers.append(ClinicalPatternRecognizer(
            supported_entity=type_, name=name, patterns=patterns, context=entry.get("context"),
            global_regex_flags=flags, validator=validator, lexicon=lexicon))
    zh_names = data.get("chinese_names")
    if zh_names and wanted("chinese_name", "NAME"):
        recognizers.append(ChineseNameRecognizer(zh_names, Path(path).parent))
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])
    config = Config(data=data, lexicon=lexicon, types=types,
                    score_threshold=float(data.get("score_threshold", 0.5)))
    return analyzer, config


# ---------------------------------------------------------------------------------------- NER filter

_MIXED_CASE = re.compile(r"(?<!^Mc)(?<!^Mac)(?<!^De)(?<!^Di)(?<!^Da)(?<!^Du)(?<!^La)(?<!^Le)(?<!^Van)(?<!^Von)"
                         r"(?<!^O')(?<!^D')[a-z][A-Z]")


def _dictionary_word(word: str, lex: Lexicon) -> bool:
    """``word`` or its stem ("infiltrating" -> "infiltrate") is in the English word list."""
    bases = {word} | {word[len(p):] for p in ("non", "un", "anti", "pre", "post", "re") if word.startswith(p)}
    endings = (("", ""), ("s", ""), ("es", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"))
    stems = {b[:len(b) - len(suffix)] + extra for b in bases for suffix, extra in endings if b.endswith(suffix)}
    return any(s in lex.english_words for s in stems if len(s) > 2)


def refine_ner_span(text: str, start: int, end: int, type_: str, lex: Lexicon) -> tuple[int, int] | None:
    """Trim titles, roles and credentials off a spaCy guess, or None when it is not a name or place.

    spaCy's small English model tags headings, drugs and findings as people or places in clinical
    text; a guess survives only if nothing here marks it as clinical vocabulary or prose.
    """
    if HAN_CHAR.search(text[start:end]):
        return None  # the English model guessing on Chinese text (出院小结): ChineseNameRecognizer handles names
    gap = re.search(r"\n|\t| {2,}", text[start:end])
    if gap and gap.start() > 0:
        end = start + gap.start()  # a line break or a column gap ends a name
    words = [(m.start() + start, m.end() + start, m.group()) for m in WORD.finditer(text[start:end])]
    while words and (len(words[0][2]) > 1 or words[0][2].lower() in lex.stop_words) and lex.is_non_name(words[0][2]):
        words.pop(0)
    while words and len(words[-1][2]) > 1 and lex.is_non_name(words[-1][2]):
        words.pop()
    while len(words) > 1 and words[-1][2].isupper() and len(words[-1][2]) <= 4 and not words[0][2].isupper():
        words.pop()  # "Sabine Takahashi   DOB": a field label after the name
    if not words:
        return None
    new_start, new_end = words[0][0], words[-1][1]
    span = text[new_start:new_end]
    lowered = [w[2].lower() for w in words]
    has_given = any(lex.is_given_name(w) for w in lowered)
    if any(ch.isdigit() for ch in span) or span.lower() in lex.clinical_terms:
        return None
    after = re.findall(r"[A-Za-z]+", text[new_end:new_end + 40])[:2]
    if any(w.lower() in lex.eponym_heads for w in after) or any(w in lex.eponym_heads for w in lowered[1:]):
        return None  # "Murphy sign", "Morse fall scale", "Glasgow Coma Scale"
    if len(words) == 1 and re.match(r"[ \t]*(?:\d|[<>=])", text[new_end:new_end + 3]):
        return None  # a value follows: "Plt 245", "Keppra 500"
    if len(words) == 1 and re.match(r"[ \t]*:", text[new_end:new_end + 2]) and not has_given:
        return None  # a heading: "Lumbar:", "Anesthesia:"
    if any(re.match(r"[A-Z]{2,}[a-z]", w[2]) or _MIXED_CASE.search(w[2]) for w in words):
        return None  # "DTaP", "PrEP", "EpiPen": abbreviations and brands, not names
    if len(words) == 1 and len(lowered[0]) <= 2:
        return None  # "Xa"
    if "_".join(lowered) in lex.english_words:
        return None  # "Tai Chi", "Pap smear" as one dictionary entry
    if (span.isupper() or span.islower()) and not has_given:
        return None  # HEADINGS and lower-case transcripts: NER is guessing; patterns handle names there
    if all(_dictionary_word(w, lex) for w in lowered) and not has_given and (len(words) > 1 or type_ == "NAME"):
        return None  # "Benzoyl Peroxide", "Cervical Spine", "Autopsy"
    if not has_given and any(w.endswith(lex.medical_suffixes) for w in lowered):
        return None  # "Melanoma", "Thyromegaly", "Benzoyl Peroxide"
    before = re.findall(r"[A-Za-z]+", text[max(0, new_start - 30):new_start])
    if len(words) == 1 and not has_given and before and before[-1].lower() in lex.drug_cues:
        return None  # "prescribed Epiduo"
    line_start = re.search(r"(?:^|[\n.:;•*-])[ \t]*$", text[max(0, new_start - 20):new_start]) is not None
    if len(words) == 1 and line_start and _dictionary_word(lowered[0], lex) and not has_given:
        return None  # "Lumbar strain.", "Reflux.", "Infiltrating lymphocytes:" opening a line or sentence
    if all(lex.is_non_name(w) for w in lowered):
        return None
    if type_ == "LOCATION" and (span.lower() in lex.not_locations
                                or all(w in lex.not_locations or lex.is_non_name(w) for w in lowered)):
        return None
    return new_start, new_end

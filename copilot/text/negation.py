"""Whether a mention is negated ("denies chest pain", "无发热")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

DATA = Path(__file__).parent / "data"

NEGATION_CUES = re.compile(
    r"\b(?:denies|denied|deny|no|not|negative for|without|free of|absence of|never had|rules? out|ruled out)\b|无|否认|未见|未",
    re.IGNORECASE)


def negated(text: str, start: int, window: int = 40) -> bool:
    """Whether the mention at ``start`` follows a negation cue in the same sentence."""
    sentence_start = max(text.rfind(ch, 0, start) for ch in ".\n;!?。；")
    before = text[max(sentence_start + 1, start - window):start]
    return bool(NEGATION_CUES.search(before))


# ConText-style polarity ------------------------------------------------------------------------
# ``negated`` above is the QC rules' quick test; ``polarity`` is the clause-scoped reading the grounding
# check needs: "no, I don't have diabetes" negates diabetes, "no fever but has a cough" does not negate
# the cough, "my mother has diabetes" is family history, and a question answered "no" in the next turn
# is negated. Cues are data (data/context.yaml).

AFFIRMED, NEGATED, FAMILY, ASKED = "affirmed", "negated", "family", "asked"


@dataclass(frozen=True)
class _Rules:
    boundaries: str
    pre: dict  # polarity -> compiled pattern
    post: dict
    pseudo: re.Pattern | None
    terminators: re.Pattern | None
    answer_no: re.Pattern | None
    answer_yes: re.Pattern | None


def _alternation(words, latin: bool) -> re.Pattern | None:
    words = sorted({str(w) for w in words or ()}, key=len, reverse=True)
    if not words:
        return None
    body = "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in words)
    return re.compile(rf"(?<![\w'])(?:{body})(?![\w'])", re.I) if latin else re.compile(body)


@lru_cache(maxsize=1)
def _rules() -> dict[str, _Rules]:
    data = yaml.safe_load((DATA / "context.yaml").read_text(encoding="utf-8"))
    rules = {}
    for language in ("english", "chinese"):
        conf, latin = data[language], language == "english"
        answers = conf.get("answers") or {}
        rules[language] = _Rules(
            boundaries="".join(conf["boundaries"]),
            pre={p: _alternation(conf[p].get("pre"), latin) for p in ("negated", "family") if conf.get(p)},
            post={p: _alternation(conf[p].get("post"), latin) for p in ("negated", "family") if conf.get(p)},
            pseudo=_alternation(conf["negated"].get("pseudo"), latin),
            terminators=_alternation(conf.get("terminators"), latin),
            answer_no=_alternation(answers.get("no"), latin),
            answer_yes=_alternation(answers.get("yes"), latin))
    return rules


_SPEAKER = re.compile(r"^\s*(?:\[[^\]\n]{1,20}\]|[A-Za-z][A-Za-z_ ]{1,20}:|[\u4e00-\u9fff]{1,4}[:：])\s*")


def _clause(text: str, start: int, end: int, boundaries: str) -> tuple[int, int]:
    left = max(text.rfind(ch, 0, start) for ch in boundaries) + 1
    rights = [i for i in (text.find(ch, end) for ch in boundaries) if i != -1]
    return left, min(rights) if rights else len(text)


MAX_SCOPE_WORDS = 6  # an English pre-cue reaches this many words, or further through a comma list


def _cue_before(rules: _Rules, pattern: re.Pattern | None, text: str, left: int, start: int, latin: bool) -> bool:
    if pattern is None:
        return False
    window = text[left:start]
    pseudo = [m.span() for m in rules.pseudo.finditer(window)] if rules.pseudo else []
    for cue in pattern.finditer(window):
        if any(a <= cue.start() < b for a, b in pseudo):
            continue
        between = window[cue.end():]
        if latin and len(between.split()) > MAX_SCOPE_WORDS and "," not in between:
            continue  # "without relief of symptoms and desires surgical treatment": out of reach
        if rules.terminators is None or not rules.terminators.search(between):
            return True
    return False


def polarity(text: str, start: int, end: int) -> str:
    """How the mention ``text[start:end]`` is asserted: affirmed, negated, family (someone else's), or
    asked (a question with no answer read)."""
    chinese = not text[start:end].isascii() or bool(re.search(r"[\u4e00-\u9fff]", text[max(0, start - 3):end + 3]))
    rules = _rules()["chinese" if chinese else "english"]
    left, right = _clause(text, start, end, rules.boundaries)
    for state in (NEGATED, FAMILY):
        if _cue_before(rules, rules.pre.get(state), text, left, start, not chinese):
            return state
        post = rules.post.get(state)
        if post is not None and post.search(text[end:right]):
            return state
    presupposed = re.search(r"\b(?:your|my|his|her|the)\s+$", text[max(left, start - 8):start], re.I)
    if right < len(text) and text[right] in "?？" and not presupposed:  # "to treat your eczema, are you...?" 
        answer = _SPEAKER.sub("", text[right + 1:right + 120].lstrip(), count=1).lower()
        if rules.answer_no and rules.answer_no.match(answer):
            return NEGATED
        return AFFIRMED if rules.answer_yes and rules.answer_yes.match(answer) else ASKED
    return AFFIRMED

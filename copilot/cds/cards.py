"""QC findings -> CDS Hooks cards (summary < 140 characters, indicator, markdown detail, source).

Text that comes from the record cannot put links, images or HTML into the clinician's card:
evidence quotes are code spans (no markdown, HTML or autolinks inside), and names and messages
have every character that opens a markdown construct backslash-escaped.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict

from copilot.cds.orders import DraftOrder
from copilot.cds.services import Catalogue, Service
from copilot.qc.registry import SEVERITIES

SUMMARY_MAX = 139  # the specification: "<140-character summary"
INDICATOR_ORDER = {"critical": 0, "warning": 1, "info": 2}
_MARKUP = re.compile(r"([\\`*_\[\]<>&|~!#])")  # what opens emphasis, code, links, images, HTML, tables
_SPACE = re.compile(r"\s+")


def md(text: object) -> str:
    """Literal inline text in CommonMark/GFM, on one line."""
    return _MARKUP.sub(r"\\\1", _SPACE.sub(" ", str(text)).strip())


def code(text: object) -> str:
    """A code span holding ``text`` verbatim: a fence longer than any backtick run inside it."""
    text = _SPACE.sub(" ", str(text)).strip()
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"


def summary(text: str) -> str:
    """One line under 140 characters, cut at a word boundary."""
    text = _SPACE.sub(" ", text).strip()
    if len(text) <= SUMMARY_MAX:
        return text
    cut = text[:SUMMARY_MAX - 1].rsplit(" ", 1)[0].rstrip(" ,;:-(")
    return cut + "…"


def _first_sentence(message: str) -> str:
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", message.strip(), maxsplit=1)[0]


def primary_source(findings: list[dict], catalogue: Catalogue) -> dict | None:
    """The cited item whose kind comes first in ``source_preference``."""
    items = [k for f in findings for k in f.get("knowledge", [])]

    def rank(item: dict) -> int:
        prefix = str(item.get("id", "")).split(".", 1)[0]
        order = catalogue.source_preference
        return order.index(prefix) if prefix in order else len(order)

    return min(items, key=rank) if items else None


def card_source(findings: list[dict], catalogue: Catalogue, topic: tuple[str, str]) -> dict:
    item = primary_source(findings, catalogue)
    source = {"label": catalogue.card_source.label}
    if item is not None:
        cited = item.get("source", {})
        source["label"] = cited.get("title") or source["label"]
        if str(cited.get("url", "")).startswith(("https://", "http://")):
            source["url"] = cited["url"]
    source["topic"] = {"system": catalogue.card_source.topic_system, "code": topic[0], "display": topic[1]}
    return source


def finding_markdown(finding: dict) -> str:
    lines = [f"**{md(finding['message'])}**", ""]
    evidence = finding.get("evidence")
    if evidence:
        context = evidence.get("context") or {}
        quote = " ".join(part for part in (code(context.get("before", "")), f"**{code(evidence['text'])}**",
                                           code(context.get("after", ""))) if part.strip("*"))
        lines += [f"Evidence in {md(evidence['document_id'])}:", "", f"> {quote}", ""]
    lines.append(f"Rule `{finding['rule_id']}` ({md(finding['category'].replace('_', ' '))}, "
                 f"{md(finding['severity'])}).")
    sources = finding.get("knowledge") or []
    if sources:
        lines += ["", "Sources:"]
        for item in sources:
            cited = item.get("source", {})
            title = md(cited.get("title", item.get("id", "")))
            url = str(cited.get("url", ""))
            label = f"[{title}]({url})" if url.startswith(("https://", "http://")) and ")" not in url else title
            where = ", ".join(md(cited[k]) for k in ("issuer", "section") if cited.get(k))
            lines.append(f"- {label}" + (f" — {where}" if where else "") + f" (`{item.get('id')}`, "
                         f"version {md(item.get('version', '?'))})")
    return "\n".join(lines)


def _card(summary_text: str, indicator: str, detail: str, source: dict, **extra) -> dict:
    return {"uuid": str(uuid.uuid4()), "summary": summary(summary_text), "indicator": indicator,
            "detail": detail, "source": source, **extra}


def _ordered(cards: list[dict]) -> list[dict]:
    return sorted(cards, key=lambda c: INDICATOR_ORDER[c["indicator"]])


def record_summary_cards(findings: list[dict], service: Service, catalogue: Catalogue) -> list[dict]:
    """patient-view: single cards for the severities the service lists (up to its maximum), one shared
    card for each other severity."""
    behaviour = service.copilot
    groups: dict[str, list[dict]] = defaultdict(list)
    cards = []
    singles = 0
    for finding in findings:
        if finding["severity"] in behaviour.single_card_severities and singles < behaviour.max_single_cards:
            singles += 1
            cards.append(_card(_first_sentence(finding["message"]), catalogue.indicators[finding["severity"]],
                               finding_markdown(finding),
                               card_source([finding], catalogue,
                                           (finding["category"], finding["category"].replace("_", " ")))))
        else:
            groups[finding["severity"]].append(finding)
    for severity in SEVERITIES:
        group = groups.get(severity)
        if not group:
            continue
        listed = group[:behaviour.max_listed]
        more = len(group) - len(listed)
        noun = "finding" if len(group) == 1 else "findings"
        head = f"{len(group)} {severity} QC {noun}: " + _first_sentence(group[0]["message"])
        detail = "\n\n---\n\n".join(finding_markdown(f) for f in listed)
        if more:
            detail += f"\n\n---\n\n{more} more {severity} {'finding' if more == 1 else 'findings'} not listed here."
        cards.append(_card(head, catalogue.indicators[severity], detail,
                           card_source([], catalogue, ("medical-record-qc", "Medical-record QC"))))
    return _ordered(cards)


def order_cards(pairs: list[tuple[dict, list[DraftOrder]]], orders: list[DraftOrder], service: Service,
                catalogue: Catalogue) -> list[dict]:
    """order-sign: one card per finding that involves a draft order, with a suggestion to remove it."""
    cards = []
    for finding, involved in pairs:
        unique = list({id(o): o for o in involved}.values())
        names = ", ".join(md(o.name) for o in unique)
        detail = f"Draft order: {names}\n\n{finding_markdown(finding)}"
        extra = {}
        removable = [o for o in unique if o.reference]
        if removable:
            extra = {"selectionBehavior": "at-most-one", "suggestions": [
                {"label": summary(f"Remove the draft order for {o.name}"), "uuid": str(uuid.uuid4()),
                 "actions": [{"type": "delete", "description": f"Remove the draft order for {o.name}",
                              "resourceId": o.reference}]} for o in removable]}
        cards.append(_card(_first_sentence(finding["message"]), catalogue.indicators[finding["severity"]], detail,
                           card_source([finding], catalogue,
                                       (finding["category"], finding["category"].replace("_", " "))), **extra))
    if service.copilot.unknown_drug_card:
        for order in orders:
            if order.drug is None:
                cards.append(_card(
                    f"Not checked: {order.name} is not in the copilot's drug knowledge base",
                    "info",
                    f"The draft order for {md(order.name)} was not checked for allergy conflicts, duplicate therapy, "
                    "interactions or dose, because the drug is not in the copilot's knowledge base. Check it "
                    "by the usual means.",
                    card_source([], catalogue, ("medication_safety", "medication safety"))))
    return _ordered(cards)


def vte_cards(assessment, indicators: dict, catalogue: Catalogue) -> list[dict]:
    """patient-view: one card with the VTE risk score, its factors and their evidence. A warning when the
    risk is high and neither prophylaxis nor a contraindication is documented; info otherwise.

    ``assessment``: a copilot.qc.vte_risk.VTEAssessment; ``indicators``: the prophylaxis indicator's
    result ({"status", "reason"}) and whether prophylaxis is documented ({"prophylaxis": bool})."""
    model, band = assessment.model, assessment.band
    risk = band.name.replace("_", " ")
    unprotected = assessment.high_risk and not indicators.get("prophylaxis") and \
        indicators.get("status") != "contraindicated"
    if unprotected:
        head = f"VTE risk high ({model.name} {assessment.score}): no prophylaxis or contraindication documented"
    elif assessment.high_risk:
        head = (f"VTE risk high ({model.name} {assessment.score}): "
                + ("prophylaxis documented" if indicators.get("prophylaxis") else "contraindication documented"))
    else:
        head = f"VTE risk {risk} ({model.name} {assessment.score})"
    lines = [f"**{md(model.name)} ({md(model.name_zh)}): {assessment.score} — {md(risk)} risk ({md(band.name_zh)})**", ""]
    for hit in assessment.factors:
        evidence = hit.evidence
        where = md(evidence.where)
        lines.append(f"- {md(hit.factor.name)} ({md(hit.factor.name_zh)}): **+{hit.factor.points}** — {where}: "
                     f"{code(evidence.text)}")
    if not assessment.factors:
        lines.append("- No risk factor found in the record.")
    if indicators.get("reason") and assessment.high_risk:
        lines += ["", f"Prophylaxis: {md(indicators['reason'])}"]
    source = {"label": model.source.title, "topic": {"system": catalogue.card_source.topic_system,
                                                      "code": "vte-risk", "display": "VTE risk"}}
    if model.source.url.startswith(("https://", "http://")):
        source["url"] = model.source.url
    return [_card(head, "warning" if unprotected else "info", "\n".join(lines), source)]

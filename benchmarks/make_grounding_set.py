"""Build benchmarks/data/grounding_pairs.jsonl: (source, draft, expected marks) pairs for grounding_eval.py.

English pairs start from MTS-Dialog (train and valid) dialogues with the clinician-written section
as the faithful draft, and ACI-Bench (train and valid) visits with a medication sentence taken from
what the visit states. Chinese pairs are written from templates (no public Chinese dialogue set is
in /work/shared/datasets) with drug names from the knowledge base. Each base gives one faithful pair
and planted copies: a negation flip, a dose swap, a frequency or duration change, a side flip, an
invented name, address, phone, drug or procedure, and the model talking about itself. The planted
kinds are regression checks (the planting and the checker share their vocabularies), not evidence
of accuracy on real model output.

    .venv/bin/python benchmarks/make_grounding_set.py [--out benchmarks/data/grounding_pairs.jsonl]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
from pathlib import Path

DATASETS = Path("/work/shared/datasets")
OUT = Path(__file__).parent / "data" / "grounding_pairs.jsonl"
SURNAMES = ["Whitfield", "Okonkwo", "Brennan", "Castellano", "Lindqvist", "Harrington", "Nakamura", "Delacroix"]
STREETS = ["Maple", "Juniper", "Harbor", "Chestnut", "Willow", "Granite", "Orchard", "Lakeview"]
INVENTED_DRUGS = [("warfarin", "5 mg daily"), ("metoprolol", "25 mg twice daily"), ("sertraline", "50 mg daily"),
                  ("atorvastatin", "40 mg at bedtime"), ("gabapentin", "300 mg three times daily"),
                  ("prednisone", "20 mg daily"), ("clopidogrel", "75 mg daily")]
PROCEDURES = ["an MRI of the spine", "a colonoscopy", "a skin biopsy", "cardiac catheterization", "lithotripsy",
              "a blood transfusion"]
SELF_TALK = ["As an AI language model, I cannot examine the patient.", "The task involves summarizing the conversation above.",
             "Here is the note based on the provided transcript."]
FREQ_WORDS = {1: "once daily", 2: "twice daily", 3: "three times daily", 4: "four times daily"}
NEGATED_FINDINGS = ["fever", "chest pain", "shortness of breath", "nausea", "vomiting", "diabetes", "cough", "headache",
                    "chills", "diarrhea", "hypertension", "depression", "weight loss", "dizziness", "palpitations"]


def pair(pid, lang, origin, source, draft, plant=None, spans=()):
    return {"id": pid, "lang": lang, "origin": origin, "plant": plant, "source": source, "draft": draft,
            "expected": [{"start": s, "end": e, "kind": k} for s, e, k in spans]}


def append(draft: str, sentence: str, target: str, kind: str):
    """``draft`` + ``sentence``, and the span of ``target`` inside the appended sentence."""
    text = draft.rstrip() + " " + sentence
    start = len(draft.rstrip()) + 1 + sentence.index(target)
    return text, (start, start + len(target), kind)


def english_pairs(rng: random.Random, graph) -> list[dict]:
    from copilot.drafting.facts import SourceFacts, findings, medication_facts, normalize_spoken
    from copilot.text.negation import polarity

    rows = []
    for split in ("train", "valid"):
        with open(DATASETS / "mts-dialog" / f"{split}.csv", encoding="utf-8") as handle:
            rows += [dict(r, split=split) for r in csv.DictReader(handle)]
    rows = [r for r in rows if 80 <= len(r["section_text"]) <= 500 and len(r["dialogue"]) <= 3000]
    rng.shuffle(rows)
    out = []
    for n, row in enumerate(rows[:40]):
        base, source = " ".join(row["section_text"].split()), row["dialogue"]
        origin = f"mts-dialog/{row['split']}/{row['ID']}"
        pid = f"en-mts-{row['split']}-{row['ID']}"
        out.append(pair(pid + "-faithful", "en", origin, source, base))
        lowered = normalize_spoken(source).lower()
        plants = []
        negated = [f for f in NEGATED_FINDINGS
                   if any(polarity(lowered, m.start(), m.end()) == "negated" for m in re.finditer(rf"\b{f}\b", lowered))
                   and not any(polarity(lowered, m.start(), m.end()) == "affirmed" for m in re.finditer(rf"\b{f}\b", lowered))]
        flip = next((m for f in negated for m in [re.search(rf"\b(?:no|denies|denied|negative for|without)\s+(?:any\s+)?({f})\b",
                                                            base, re.I)] if m), None)
        if flip:  # in place: "She denies fever" -> "She reports fever"
            draft = base[:flip.start()] + "reports " + base[flip.start(1):]
            start = flip.start() + len("reports ")
            out.append(pair(f"{pid}-negation_flip", "en", origin, source, draft, "negation_flip",
                            [(start, start + len(flip.group(1)), "finding")]))
        elif negated:
            plants.append(("negation_flip", f"She has a history of {negated[0]}.", negated[0], "finding"))
        surname = next(s for s in SURNAMES[n % 8:] + SURNAMES if s.lower() not in lowered)
        plants.append(("invented_name", f"She was seen with her son, Dr. {surname}.", surname, "name"))
        street = next(s for s in STREETS[n % 8:] + STREETS if s.lower() not in lowered)
        plants.append(("invented_address", f"She lives at {40 + n} {street} Street.", f"{40 + n} {street} Street", "address"))
        drug, rest = next(d for d in INVENTED_DRUGS[n % 7:] + INVENTED_DRUGS if d[0] not in lowered)
        plants.append(("invented_drug", f"Started {drug} {rest}.", drug, "medication"))
        procedure = PROCEDURES[n % len(PROCEDURES)]
        head = procedure.split()[-1]
        if head.lower() not in lowered and "transfusion" not in lowered:
            plants.append(("invented_procedure", f"Plan for {procedure}.", procedure.split(" of ")[0].split()[-1], "procedure"))
        talk = SELF_TALK[n % len(SELF_TALK)]
        plants.append(("self_talk", talk, talk, "self_talk"))
        days = re.search(r"\b(\d+|two|three|four|five|six|seven|ten) (days|weeks|months)\b", lowered)
        if days:
            other = {"days": "weeks", "weeks": "months", "months": "years"}[days.group(2)]
            number = normalize_spoken(days.group(1))
            plants.append(("duration_change", f"Symptoms for {number} {other}.", f"{number} {other}", "duration"))
        for plant, sentence, target, kind in plants:
            draft, span = append(base, sentence, target, kind)
            out.append(pair(f"{pid}-{plant}", "en", origin, source, draft, plant, [span]))
    # ACI-Bench: whole visits; the draft is a medication sentence built from a drug the visit doses
    visits = []
    for split in ("train", "valid"):
        data = json.loads((DATASETS / "aci-bench" / f"{split}.json").read_text(encoding="utf-8"))["data"]
        visits += [(split, v) for v in data]
    for split, visit in visits:
        source = visit["src"]
        spoken = normalize_spoken(source)
        meds = [m for m in medication_facts(spoken, graph) if m.dose and m.polarity == "affirmed"]
        if not meds:
            continue
        med = meds[0]
        amount, unit = med.dose[2].split()
        said = {m.frequency[2] for m in meds if m.generic == med.generic and m.frequency}
        per_day = med.frequency[2] if med.frequency and med.frequency[2] in FREQ_WORDS and len(said) == 1 else None
        origin, pid = f"aci-bench/{split}/{visit['file']}", f"en-aci-{split}-{visit['file']}"
        freq = f" {FREQ_WORDS[per_day]}" if per_day else ""
        name = med.text.capitalize()
        faithful = f"Medications: continues {name} {amount} {unit}{freq}."
        out.append(pair(pid + "-faithful", "en", origin, source, faithful))
        wrong = f"{float(amount) * 4:g}"
        draft = f"Medications: continues {name} {wrong} {unit}{freq}."
        start = draft.index(f"{wrong} {unit}")
        out.append(pair(pid + "-dose_swap", "en", origin, source, draft, "dose_swap",
                        [(start, start + len(f"{wrong} {unit}"), "dose")]))
        if per_day:
            other = FREQ_WORDS[1 if per_day != 1 else 2]
            draft = f"Medications: continues {name} {amount} {unit} {other}."
            start = draft.index(other)
            out.append(pair(pid + "-frequency_change", "en", origin, source, draft, "frequency_change",
                            [(start, start + len(other), "frequency")]))
        stated = SourceFacts([source]).findings
        negated = [f for f in NEGATED_FINDINGS for found in findings(f)[:1] if stated.get(found.id) == {"negated"}]
        if negated:
            draft = f"History of {negated[0]}. " + faithful
            out.append(pair(pid + "-negation_flip", "en", origin, source, draft, "negation_flip",
                            [(11, 11 + len(negated[0]), "finding")]))
        sides = re.search(r"\b(left|right) (knee|elbow|shoulder|ankle|wrist|hip|foot|hand|arm|leg)\b", spoken.lower())
        if sides and not re.search(rf"\b{ {'left': 'right', 'right': 'left'}[sides.group(1)]} {sides.group(2)}", spoken.lower()):
            flipped = {"left": "right", "right": "left"}[sides.group(1)]
            draft = f"{flipped.capitalize()} {sides.group(2)} pain. " + faithful
            out.append(pair(pid + "-side_flip", "en", origin, source, draft, "side_flip",
                            [(0, len(flipped) + 1 + len(sides.group(2)), "side")]))
    return out


ZH_DRUGS = [("氨氯地平", 5, 1), ("二甲双胍", 500, 2), ("阿司匹林", 100, 1), ("阿托伐他汀", 20, 1), ("美托洛尔", 25, 2),
            ("奥美拉唑", 20, 1), ("缬沙坦", 80, 1), ("氯吡格雷", 75, 1)]
ZH_SITES = ["膝", "肩", "肘", "踝", "髋", "腕"]
ZH_DX = ["高血压", "糖尿病", "冠心病", "高脂血症"]
ZH_NEG = ["糖尿病", "发热", "胸痛", "咳嗽", "头痛"]
ZH_COUNT = {1: "一", 2: "两", 3: "三"}


def chinese_pairs(rng: random.Random) -> list[dict]:
    out = []
    for n in range(24):
        drug, dose, per_day = ZH_DRUGS[n % len(ZH_DRUGS)]
        site, side = ZH_SITES[n % len(ZH_SITES)], "左右"[n % 2]
        dx = ZH_DX[n % len(ZH_DX)]
        neg = next(x for x in ZH_NEG[n % len(ZH_NEG):] + ZH_NEG if x != dx)
        days, years = 2 + n % 5, 3 + n % 7
        source = (f"医生：您哪里不舒服？\n患者：{side}{site}疼痛{days}天了。\n医生：有没有{neg}？\n患者：没有。\n"
                  f"医生：以前有什么病？\n患者：有{dx}{years}年了，一直吃{drug}{dose}mg，每日{ZH_COUNT[per_day]}次。")
        faithful = f"{side}{site}疼痛{days}天。否认{neg}。{dx}病史{years}年，口服{drug}{dose}mg，每日{per_day}次。"
        pid, origin = f"zh-template-{n}", "template (Chinese)"
        out.append(pair(pid + "-faithful", "zh", origin, source, faithful))
        other_side = "右" if side == "左" else "左"
        variants = [
            ("negation_flip", f"既往{neg}史。" + faithful[faithful.index("。") + 1:].replace(f"否认{neg}。", ""), neg, "finding"),
            ("dose_swap", faithful.replace(f"{dose}mg", f"{dose * 2}mg"), f"{dose * 2}mg", "dose"),
            ("frequency_change", faithful.replace(f"每日{per_day}次", f"每日{per_day + 1}次"), f"每日{per_day + 1}次", "frequency"),
            ("side_flip", faithful.replace(f"{side}{site}", f"{other_side}{site}", 1), f"{other_side}{site}", "side"),
            ("invented_name", "患者姓名：王建国。" + faithful, "王建国", "name"),
            ("invented_address", faithful + "住址：北京市朝阳区建国路88号。", "北京市朝阳区建国路88号", "address"),
            ("invented_drug", faithful + "加用华法林3mg每日一次。", "华法林", "medication"),
            ("invented_procedure", faithful + "建议手术治疗。", "手术", "procedure"),
            ("self_talk", "作为一个人工智能语言模型，我无法诊断。" + faithful, "作为一个人工智能语言模型，我无法诊断。", "self_talk"),
        ]
        for plant, draft, target, kind in variants:
            start = draft.index(target)
            out.append(pair(f"{pid}-{plant}", "zh", origin, source, draft, plant, [(start, start + len(target), kind)]))
    return out


def main() -> None:
    from datetime import date

    from knowledge.graph import KnowledgeGraph
    from knowledge.snapshot import Snapshot

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--knowledge", type=Path, default=Path(".cache/test-home"),
                        help="COPILOT_HOME holding a built knowledge snapshot")
    args = parser.parse_args()
    graph = KnowledgeGraph(Snapshot.current(args.knowledge), today=date(2026, 12, 1))
    rng = random.Random(12)
    pairs = english_pairs(rng, graph) + chinese_pairs(rng)
    with args.out.open("w", encoding="utf-8") as handle:
        for p in pairs:
            handle.write(json.dumps(p, ensure_ascii=False) + "\n")
    print(f"{len(pairs)} pairs -> {args.out}")


if __name__ == "__main__":
    main()

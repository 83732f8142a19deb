"""Measure the de-identification scrubber on the labelled PHI set, and its speed.

Reads finetune/data/phi_eval.jsonl (invented clinical snippets, PHI spans labelled by type, plus
clinical look-alikes that must NOT be detected), runs ``Scrubber.detect`` and reports per PHI
type precision, recall and F1 for two matchings:

  overlap  a prediction counts when it overlaps a labelled span of the same type
  exact    only when its boundaries are exactly those of the labelled span

plus micro totals, type-agnostic recall (a span caught under another type is still scrubbed),
the look-alikes hit (false positives on doses, vitals, eponyms, ...), and throughput: seconds to
load the scrubber, and time to scrub each ACI-Bench transcript (../shared/datasets/aci-bench).

    python benchmarks/deid_eval.py --out deid_report.json [--errors]
    python benchmarks/deid_eval.py --data benchmarks/data/deid_zh.jsonl --no-speed   # the Chinese set

Labelled sets are written by hand as markup (``{NAME:王建国}`` marks a PHI span, ``<heading:出院小结>``
a look-alike that must not be detected; ``### id kind`` starts a snippet) so offsets are never
counted by hand; ``--markup SRC --data OUT.jsonl`` rebuilds the JSONL from it.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

from copilot.config import Settings  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "finetune" / "data" / "phi_eval.jsonl"
ACI_CANDIDATES = [Settings().datasets_dir / "aci-bench" / "valid.json"]


def load_set(path: Path = DATA) -> list[dict]:
    rows = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            for key in ("id", "text", "spans"):
                if key not in row:
                    raise ValueError(f"{path}:{number}: missing {key!r}")
            rows.append(row)
    return rows


_MARK = re.compile(r"\{([A-Z]+):([^{}]+)\}|<([a-z_]+):([^<>]+)>")


def parse_markup(source: str) -> list[dict]:
    """Rows with character offsets from hand-written markup (see the module docstring)."""
    rows: list[dict] = []
    for block in re.split(r"^### ", source, flags=re.M):
        if not block.strip():
            continue
        header, _, body = block.partition("\n")
        parts = header.split()
        if len(parts) < 2:
            raise ValueError(f"snippet header needs an id and a kind: {header!r}")
        text, spans, lookalikes, pos = [], [], [], 0
        last = 0
        for match in _MARK.finditer(body.rstrip("\n")):
            text.append(body[last:match.start()])
            pos += match.start() - last
            value = match.group(2) or match.group(4)
            if match.group(1):
                spans.append({"start": pos, "end": pos + len(value), "type": match.group(1), "text": value})
            else:
                lookalikes.append({"start": pos, "end": pos + len(value), "kind": match.group(3), "text": value})
            text.append(value)
            pos += len(value)
            last = match.end()
        text.append(body.rstrip("\n")[last:])
        rows.append({"id": parts[0], "kind": parts[1], "text": "".join(text), "spans": spans,
                     "lookalikes": lookalikes})
    return rows


def sample_detections(scrubber, texts: list[tuple[str, str]], n: int = 50, seed: int = 4) -> list[dict]:
    """``n`` detections drawn at random (fixed seed) with their context, to label true/false by reading."""
    import random

    found = [{"id": id_, "type": d.type, "before": text[max(0, d.start - 35):d.start], "value": text[d.start:d.end],
              "after": text[d.end:d.end + 25]} for id_, text in texts for d in scrubber.detect(text)]
    return random.Random(seed).sample(found, min(n, len(found)))


def _overlaps(a, b) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _prf(tp_pred: int, n_pred: int, tp_gold: int, n_gold: int) -> dict:
    precision = tp_pred / n_pred if n_pred else 1.0
    recall = tp_gold / n_gold if n_gold else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "gold": n_gold, "predicted": n_pred}


def evaluate(scrubber, rows: list[dict]) -> dict:
    """Detection quality on labelled rows; ``errors`` lists misses and false alarms by id and offsets."""
    gold_n, pred_n = defaultdict(int), defaultdict(int)
    hit = {m: defaultdict(int) for m in ("overlap", "exact")}     # gold spans found, by type
    good = {m: defaultdict(int) for m in ("overlap", "exact")}    # predictions that are right, by type
    any_found = any_gold = any_good = any_pred = 0
    lookalike_hits: dict[str, int] = defaultdict(int)
    lookalike_total: dict[str, int] = defaultdict(int)
    errors = []
    for row in rows:
        text = row["text"]
        preds = [(d.start, d.end, d.type) for d in scrubber.detect(text)]
        gold = [(s["start"], s["end"], s["type"]) for s in row["spans"]]
        for g in gold:
            gold_n[g[2]] += 1
            same = [p for p in preds if p[2] == g[2] and _overlaps(p, g)]
            hit["overlap"][g[2]] += bool(same)
            hit["exact"][g[2]] += any(p[:2] == g[:2] for p in same)
            any_gold += 1
            if any(_overlaps(p, g) for p in preds):
                any_found += 1
            else:
                errors.append({"id": row["id"], "kind": "missed", "type": g[2], "start": g[0], "end": g[1]})
        for p in preds:
            pred_n[p[2]] += 1
            same = [g for g in gold if g[2] == p[2] and _overlaps(p, g)]
            good["overlap"][p[2]] += bool(same)
            good["exact"][p[2]] += any(g[:2] == p[:2] for g in same)
            any_pred += 1
            if any(_overlaps(p, g) for g in gold):
                any_good += 1
            else:
                errors.append({"id": row["id"], "kind": "false_alarm", "type": p[2], "start": p[0], "end": p[1]})
            mistyped = [g for g in gold if g[2] != p[2] and _overlaps(p, g)] if not same else []
            if mistyped:
                errors.append({"id": row["id"], "kind": "wrong_type", "type": p[2], "gold_type": mistyped[0][2],
                               "start": p[0], "end": p[1]})
        for la in row.get("lookalikes", []):
            lookalike_total[la["kind"]] += 1
            if any(_overlaps(p, (la["start"], la["end"])) for p in preds):
                lookalike_hits[la["kind"]] += 1
                errors.append({"id": row["id"], "kind": "lookalike_detected", "lookalike": la["kind"],
                               "start": la["start"], "end": la["end"]})
    types = sorted(set(gold_n) | set(pred_n))
    report = {"rows": len(rows), "gold_spans": sum(gold_n.values()), "matching": {}}
    for mode in ("overlap", "exact"):
        per_type = {t: _prf(good[mode][t], pred_n[t], hit[mode][t], gold_n[t]) for t in types}
        micro = _prf(sum(good[mode].values()), sum(pred_n.values()), sum(hit[mode].values()), sum(gold_n.values()))
        report["matching"][mode] = {"per_type": per_type, "micro": micro}
    report["overall"] = report["matching"]["overlap"]["micro"]
    report["type_agnostic"] = _prf(any_good, any_pred, any_found, any_gold)
    report["lookalikes"] = {"total": sum(lookalike_total.values()), "detected": sum(lookalike_hits.values()),
                            "by_kind": {k: {"total": lookalike_total[k], "detected": lookalike_hits[k]}
                                        for k in sorted(lookalike_total)}}
    report["errors"] = errors
    return report


def throughput(scrubber, texts: list[str]) -> dict:
    """Seconds per text after load for ``scrub`` and for ``gate`` (scrub + re-detection)."""
    from finetune.deid import PHIRefused, SurrogateMap

    scrub_s, gate_s, words, refused = [], [], 0, 0
    for i, text in enumerate(texts):
        started = time.perf_counter()
        scrubber.scrub(text, SurrogateMap(seed=f"bench-{i}"))
        scrub_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        try:
            scrubber.gate(text, SurrogateMap(seed=f"bench-{i}"))
        except PHIRefused:
            refused += 1
        gate_s.append(time.perf_counter() - started)
        words += len(text.split())
    if not texts:
        return {}

    def stats(times: list[float]) -> dict:
        return {"mean_s": round(statistics.mean(times), 4), "median_s": round(statistics.median(times), 4),
                "max_s": round(max(times), 4), "words_per_s": round(words / sum(times))}

    return {"texts": len(texts), "mean_words": round(words / len(texts)), "scrub": stats(scrub_s),
            "gate": stats(gate_s), "refused": refused}


def aci_transcripts(path: Path | None) -> list[str]:
    for candidate in ([path] if path else ACI_CANDIDATES):
        if candidate and candidate.is_file():
            return [item["src"] for item in json.loads(candidate.read_text(encoding="utf-8"))["data"]]
    return []


def _table(report: dict) -> str:
    lines = [f"{'type':9} {'gold':>5} {'pred':>5} {'P':>6} {'R':>6} {'F1':>6}   exact: {'P':>6} {'R':>6}"]
    overlap, exact = report["matching"]["overlap"], report["matching"]["exact"]
    for t, m in overlap["per_type"].items():
        e = exact["per_type"][t]
        lines.append(f"{t:9} {m['gold']:5} {m['predicted']:5} {m['precision']:6.3f} {m['recall']:6.3f} {m['f1']:6.3f}"
                     f"          {e['precision']:6.3f} {e['recall']:6.3f}")
    m, e = overlap["micro"], exact["micro"]
    lines.append(f"{'micro':9} {m['gold']:5} {m['predicted']:5} {m['precision']:6.3f} {m['recall']:6.3f} "
                 f"{m['f1']:6.3f}          {e['precision']:6.3f} {e['recall']:6.3f}")
    a = report["type_agnostic"]
    lines.append(f"type-agnostic: P {a['precision']:.3f} R {a['recall']:.3f}")
    la = report["lookalikes"]
    lines.append(f"clinical look-alikes detected as PHI: {la['detected']} of {la['total']} "
                 + ", ".join(f"{k} {v['detected']}/{v['total']}" for k, v in la["by_kind"].items() if v["detected"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="labelled JSONL (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="write the full report as JSON here")
    parser.add_argument("--aci", type=Path, help="ACI-Bench json for the speed test (default: ../shared/datasets)")
    parser.add_argument("--no-speed", action="store_true", help="skip the throughput measurement")
    parser.add_argument("--errors", action="store_true", help="print every miss and false alarm (with the text)")
    parser.add_argument("--sample-dialogues", type=Path,
                        help="MTS-Dialog CSV: print 50 detections on 400 of its dialogues (fixed seeds) to label, then stop")
    parser.add_argument("--markup", type=Path, help="rebuild --data from this hand-written markup file first")
    args = parser.parse_args(argv)

    if args.sample_dialogues:
        import csv
        import random

        from finetune.deid import Scrubber

        with args.sample_dialogues.open(encoding="utf-8") as handle:
            dialogues = [(r["ID"], r["dialogue"]) for r in csv.DictReader(handle)]
        chosen = random.Random(16).sample(dialogues, min(400, len(dialogues)))
        for i, d in enumerate(sample_detections(Scrubber(), chosen)):
            print(i, d["id"], d["type"], repr(d["before"]), "[[", d["value"], "]]", repr(d["after"]))
        return 0
    if args.markup:
        built = parse_markup(args.markup.read_text(encoding="utf-8"))
        args.data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in built), encoding="utf-8")
        print(f"{args.data}: {len(built)} snippets, {sum(len(r['spans']) for r in built)} spans from {args.markup}")
    rows = load_set(args.data)
    started = time.perf_counter()
    from finetune.deid import Scrubber

    scrubber = Scrubber()
    load_s = time.perf_counter() - started
    report = evaluate(scrubber, rows)
    report["load_s"] = round(load_s, 2)
    print(f"{len(rows)} snippets, {report['gold_spans']} PHI spans; scrubber loaded in {load_s:.1f} s")
    print(_table(report))
    splits = sorted({row.get("split", "all") for row in rows})
    if len(splits) > 1:
        report["by_split"] = {}
        for split in splits:
            part = evaluate(scrubber, [row for row in rows if row.get("split", "all") == split])
            report["by_split"][split] = {"rows": part["rows"], "overall": part["overall"],
                                         "type_agnostic": part["type_agnostic"], "lookalikes": part["lookalikes"]}
            o, a = part["overall"], part["type_agnostic"]
            print(f"split {split}: {part['rows']} snippets, {o['gold']} spans: P {o['precision']:.3f} "
                  f"R {o['recall']:.3f} (type-agnostic R {a['recall']:.3f}), look-alikes detected "
                  f"{part['lookalikes']['detected']}/{part['lookalikes']['total']}")
    if args.errors:
        texts = {row["id"]: row["text"] for row in rows}
        for e in report["errors"]:
            print(f"  {e['kind']:18} {e.get('type', e.get('lookalike')):9} {e['id']:16} "
                  f"{texts[e['id']][e['start']:e['end']]!r}")
    if not args.no_speed:
        report["speed"] = {"eval_set": throughput(scrubber, [row["text"] for row in rows])}
        transcripts = aci_transcripts(args.aci)
        if transcripts:
            report["speed"]["aci_bench"] = throughput(scrubber, transcripts)
        for name, s in report["speed"].items():
            print(f"speed {name}: {s['texts']} texts of ~{s['mean_words']} words; "
                  f"scrub {s['scrub']['mean_s'] * 1000:.0f} ms mean / {s['scrub']['max_s'] * 1000:.0f} ms max; "
                  f"gate {s['gate']['mean_s'] * 1000:.0f} ms mean / {s['gate']['max_s'] * 1000:.0f} ms max; "
                  f"{s['gate']['words_per_s']} words/s gated; refused {s['refused']}")
    if args.out:  # errors are written as ids and offsets, never as text
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

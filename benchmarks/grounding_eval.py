"""Grounding check on (source, draft, expected marks) pairs: the fraction right.

A planted pair is right when every planted span is covered by a mark (and, reported apart, by a mark
of the expected kind); a faithful pair is right when nothing is marked. Marks outside the planted
span of a planted pair are counted as extra marks. The pairs come from make_grounding_set.py; the
planted kinds are regression checks, and the faithful English pairs are clinician-written summaries
that sometimes state what the dialogue does not (a mark there is not always wrong).

    .venv/bin/python benchmarks/grounding_eval.py [--pairs FILE] [--limit N] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

PAIRS = Path(__file__).parent / "data" / "grounding_pairs.jsonl"


def load_pairs(path: Path = PAIRS, limit: int | None = None, every: int = 1) -> list[dict]:
    pairs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    pairs = pairs[::every]
    return pairs[:limit] if limit else pairs


def judge(pair: dict, marks: list[dict]) -> dict:
    def covered(span, kind=None):
        return any(m["start"] < span["end"] and span["start"] < m["end"] and (kind is None or m["kind"] == kind)
                   for m in marks)

    expected = pair["expected"]
    extra = [m for m in marks if not any(m["start"] < e["end"] and e["start"] < m["end"] for e in expected)]
    if expected:
        right = all(covered(e) for e in expected)
        kind_right = all(covered(e, e["kind"]) for e in expected)
    else:
        right = kind_right = not marks
    return {"right": right, "kind_right": kind_right, "extra": extra}


def evaluate(pairs: list[dict], graph) -> dict:
    from copilot.drafting.grounding import ground

    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    kind_right = extra_marks = 0
    misses = []
    started = time.perf_counter()
    for pair in pairs:
        marks = ground(pair["source"], pair["draft"], None, graph)
        verdict = judge(pair, marks)
        for key in ("all", f"lang:{pair['lang']}", f"plant:{pair['plant'] or 'faithful'}",
                    f"{pair['lang']}:{pair['plant'] or 'faithful'}"):
            groups[key][0] += verdict["right"]
            groups[key][1] += 1
        kind_right += verdict["kind_right"]
        if pair["expected"]:
            extra_marks += len(verdict["extra"])
        if not verdict["right"]:
            misses.append({"id": pair["id"], "marks": [(m["kind"], m["text"]) for m in marks][:6]})
    return {"pairs": len(pairs), "right": groups["all"][0] / max(1, len(pairs)),
            "kind_right": kind_right / max(1, len(pairs)),
            "groups": {k: {"right": r, "n": n, "fraction": round(r / n, 3)} for k, (r, n) in sorted(groups.items())},
            "extra_marks_on_planted_pairs": extra_marks, "seconds": round(time.perf_counter() - started, 2),
            "misses": misses}


def main() -> int:
    from datetime import date

    from knowledge.graph import KnowledgeGraph
    from knowledge.snapshot import Snapshot

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=PAIRS)
    parser.add_argument("--knowledge", type=Path, default=Path(".cache/test-home"),
                        help="COPILOT_HOME holding a built knowledge snapshot")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--misses", action="store_true", help="list the pairs judged wrong")
    args = parser.parse_args()
    graph = KnowledgeGraph(Snapshot.current(args.knowledge), today=date(2026, 12, 1))
    result = evaluate(load_pairs(args.pairs, args.limit), graph)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=1))
        return 0
    print(f"{result['pairs']} pairs: {result['right']:.3f} right ({result['kind_right']:.3f} with the expected kind); "
          f"{result['extra_marks_on_planted_pairs']} marks outside planted spans; {result['seconds']} s")
    for key, group in result["groups"].items():
        if key != "all":
            print(f"  {key:<32} {group['right']:>4}/{group['n']:<4} {group['fraction']:.3f}")
    if args.misses:
        for miss in result["misses"]:
            print(miss, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

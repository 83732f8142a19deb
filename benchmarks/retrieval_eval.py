"""Retrieval quality and latency: dense-only vs lexical-only vs fused, on labeled queries.

A query is a hit when any of its relevant item ids is in the top k. Reports recall@k,
MRR (of the first relevant result, within the candidates returned) and p50/p95 query
latency, per query type and overall.

    python benchmarks/retrieval_eval.py [--queries benchmarks/data/retrieval_queries.yaml] [--k 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import copilot.config  # noqa: E402,F401  (offline environment)

MODES = ("dense", "lexical", "fused")


def evaluate(retriever, queries: list[dict], k: int = 5, depth: int = 20) -> dict:
    report = {}
    for mode in MODES:
        retriever.search("warm up", k=k, mode=mode)
        hits, reciprocal, latencies, by_type = 0, 0.0, [], {}
        misses = []
        for query in queries:
            started = time.perf_counter()
            results = retriever.search(query["query"], k=depth, mode=mode)
            latencies.append((time.perf_counter() - started) * 1000)
            ids = [r["id"] for r in results]
            rank = next((i + 1 for i, item_id in enumerate(ids) if item_id in set(query["relevant"])), None)
            hit = rank is not None and rank <= k
            hits += hit
            reciprocal += 1 / rank if rank else 0.0
            kind = by_type.setdefault(query.get("type", "plain"), [0, 0])
            kind[0] += hit
            kind[1] += 1
            if not hit:
                misses.append({"query": query["query"], "expected": query["relevant"], "got": ids[:k]})
        latencies.sort()
        report[mode] = {
            "recall_at_k": hits / len(queries),
            "mrr": reciprocal / len(queries),
            "p50_ms": statistics.median(latencies),
            "p95_ms": latencies[min(len(latencies) - 1, int(round(0.95 * len(latencies))) - 1)],
            "by_type": {t: v[0] / v[1] for t, v in sorted(by_type.items())},
            "misses": misses,
        }
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=Path, default=HERE / "data" / "retrieval_queries.yaml")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the full report (with misses) here")
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args(argv)

    import yaml

    from copilot.config import Settings
    from knowledge.retrieval import Retriever
    from knowledge.snapshot import NoSnapshot, Snapshot

    queries = yaml.safe_load(args.queries.read_text(encoding="utf-8"))["queries"]
    try:
        snapshot = Snapshot.current(Settings().home)
    except NoSnapshot as exc:
        print(f"retrieval_eval: {exc}", file=sys.stderr)
        return 2
    unknown = sorted({i for q in queries for i in q["relevant"]} - set(snapshot.items))
    if unknown:
        print(f"retrieval_eval: labeled ids not in snapshot {snapshot.id}: {', '.join(unknown)}", file=sys.stderr)
        return 2
    report = evaluate(Retriever(snapshot), queries, k=args.k)
    types = sorted(report["fused"]["by_type"])
    print(f"Retrieval on snapshot {snapshot.id}: {len(queries)} labeled queries, k={args.k}\n")
    print(f"| mode | recall@{args.k} | MRR | p50 ms | p95 ms | " + " | ".join(types) + " |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(types))
    for mode in MODES:
        r = report[mode]
        print(f"| {mode} | {r['recall_at_k']:.3f} | {r['mrr']:.3f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
              + " | ".join(f"{r['by_type'][t]:.2f}" for t in types) + " |")
    if args.show_misses:
        for miss in report["fused"]["misses"]:
            print(f"\nmiss: {miss['query']}\n  expected {miss['expected']}\n  got      {miss['got']}")
    if args.json:
        args.json.write_text(json.dumps({"snapshot": snapshot.id, "queries": len(queries), "k": args.k, **report},
                                        indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

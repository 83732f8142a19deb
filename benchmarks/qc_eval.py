"""QC quality and speed: precision/recall per category on the planted-defect set,
throughput with N workers, memory over a large batch, and MEDEC error-flag accuracy.

    python benchmarks/qc_eval.py                       # dev set + throughput (2 workers) + MEDEC rules-only
    python benchmarks/qc_eval.py --memory-records 10000
    python benchmarks/qc_eval.py --llm --medec-limit 60   # adds the model pass on a MEDEC sample

A record counts for a category when at least one finding of that category is reported;
each defective record has exactly one planted defect, clean records have none.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import copilot.config  # noqa: E402,F401

from copilot.config import Settings  # noqa: E402
from copilot.qc.registry import CATEGORIES  # noqa: E402

MEDEC = Settings().datasets_dir / "medec" / "ms-validation.csv"


def precision_recall(engine, rows: list[dict]) -> dict:
    from copilot.records.loaders import record_from_json

    counts = {c: {"tp": 0, "fp": 0, "fn": 0} for c in CATEGORIES}
    mistakes = []
    for row in rows:
        findings = engine.check(record_from_json(row["record"]))
        predicted = {f["category"] for f in findings}
        expected = {e["category"] for e in row["expected"]}
        for category in CATEGORIES:
            if category in predicted and category in expected:
                counts[category]["tp"] += 1
            elif category in predicted:
                counts[category]["fp"] += 1
                mistakes.append({"record": row["record"]["id"], "false_positive": category,
                                 "findings": [f["message"] for f in findings if f["category"] == category][:2]})
            elif category in expected:
                counts[category]["fn"] += 1
                mistakes.append({"record": row["record"]["id"], "missed": category, "planted": row["expected"]})
    report = {}
    for category, c in counts.items():
        report[category] = {**c, "precision": c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 1.0,
                            "recall": c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 1.0}
    return {"per_category": report, "mistakes": mistakes}


def throughput(rows: list[dict], home: Path, workers: int, records: int) -> dict:
    """Records/s of `copilot qc` over a JSONL of `records` dev-set records, and its memory over time."""
    import psutil

    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "batch.jsonl", Path(tmp) / "out.jsonl"
        with source.open("w") as handle:
            for index in range(records):
                record = dict(rows[index % len(rows)]["record"], id=f"bench-{index:06d}")
                handle.write(json.dumps(record) + "\n")
        command = [sys.executable, "-m", "copilot", "qc", str(source), "--out", str(out), "--workers", str(workers), "--quiet"]
        samples: list[tuple[float, int, float]] = []
        started = time.perf_counter()
        process = subprocess.Popen(command, env=dict(os.environ, COPILOT_HOME=str(home)),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        watcher = psutil.Process(process.pid)

        def sample():
            while process.poll() is None:
                try:
                    tree = [watcher] + watcher.children(recursive=True)
                    rss = sum(p.memory_info().rss for p in tree if p.is_running())
                    done = sum(1 for _ in out.open()) if out.exists() else 0
                    samples.append((time.perf_counter() - started, done, rss / 2**20))
                except (psutil.Error, OSError):
                    pass
                time.sleep(0.5)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        _, stderr = process.communicate()
        elapsed = time.perf_counter() - started
        thread.join(timeout=2)
        if process.returncode not in (0, 1):
            raise RuntimeError(f"copilot qc failed: {stderr[-2000:]}")
        written = sum(1 for _ in out.open())
    steady = [s for s in samples if s[1] > 0]
    return {"records": written, "workers": workers, "seconds": round(elapsed, 2),
            "records_per_s": round(written / elapsed, 1),
            "rss_mb_first_quarter": round(max((s[2] for s in steady if s[1] <= records / 4), default=0), 1),
            "rss_mb_last_quarter": round(max((s[2] for s in steady if s[1] >= records * 3 / 4), default=0), 1)}


def medec_accuracy(engine, limit: int | None, model_pass=None) -> dict:
    from copilot.records.loaders import record_from_text

    with MEDEC.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:limit]
    correct = flagged = 0
    for row in rows:
        record = record_from_text(row["Text"], row["Text ID"], "medec")
        findings = [f for f in engine.check(record) if f["category"] != "completeness"]
        if model_pass is not None:
            findings += model_pass(record)
        predicted = bool(findings)
        flagged += predicted
        correct += predicted == (row["Error Flag"] == "1")
    positives = sum(row["Error Flag"] == "1" for row in rows)
    return {"texts": len(rows), "accuracy": round(correct / len(rows), 3), "flagged": flagged,
            "majority_baseline": round(max(positives, len(rows) - positives) / len(rows), 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devset", type=Path, default=HERE / "data" / "qc_devset.jsonl")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--throughput-records", type=int, default=2000)
    parser.add_argument("--memory-records", type=int, default=0, help="also run a batch this large and report memory")
    parser.add_argument("--medec-limit", type=int, default=None, help="only the first N MEDEC texts")
    parser.add_argument("--llm", action="store_true", help="also MEDEC with the model pass (slow: use --medec-limit)")
    parser.add_argument("--json", type=Path, help="write the full report (with every mistake) here")
    args = parser.parse_args(argv)

    from copilot.config import Settings
    from copilot.qc.runner import QCRunner
    from knowledge.snapshot import Snapshot

    settings = Settings()
    engine = QCRunner(Snapshot.current(settings.knowledge_dir))
    rows = [json.loads(line) for line in args.devset.read_text(encoding="utf-8").splitlines() if line.strip()]
    report = {"devset": str(args.devset), "records": len(rows), **precision_recall(engine, rows)}
    print(f"Planted-defect set: {len(rows)} records ({sum(1 for r in rows if not r['expected'])} clean)\n")
    print("| category | TP | FP | FN | precision | recall |\n|---|---:|---:|---:|---:|---:|")
    for category, r in report["per_category"].items():
        print(f"| {category} | {r['tp']} | {r['fp']} | {r['fn']} | {r['precision']:.3f} | {r['recall']:.3f} |")

    speed = throughput(rows, settings.home, args.workers, args.throughput_records)
    report["throughput"] = speed
    print(f"\nThroughput: {speed['records']} records, {args.workers} workers: {speed['records_per_s']} records/s")
    if args.memory_records:
        memory = throughput(rows, settings.home, args.workers, args.memory_records)
        report["memory"] = memory
        print(f"Memory over {memory['records']} records: peak RSS {memory['rss_mb_first_quarter']} MB in the first "
              f"quarter, {memory['rss_mb_last_quarter']} MB in the last ({memory['records_per_s']} records/s)")

    if MEDEC.is_file():
        rules_only = medec_accuracy(engine, args.medec_limit)
        report["medec_rules_only"] = rules_only
        print(f"\nMEDEC error flag, rules only: accuracy {rules_only['accuracy']} on {rules_only['texts']} texts "
              f"({rules_only['flagged']} flagged; majority baseline {rules_only['majority_baseline']})")
        if args.llm:
            from copilot.engine.pipeline import Engine
            from copilot.qc.llm import ModelReviewer

            reviewer = ModelReviewer(Engine(settings.served_model_dir))
            with_model = medec_accuracy(engine, args.medec_limit, reviewer.review)
            report["medec_with_llm"] = with_model
            print(f"MEDEC error flag, rules + model: accuracy {with_model['accuracy']} on {with_model['texts']} texts "
                  f"({with_model['flagged']} flagged)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

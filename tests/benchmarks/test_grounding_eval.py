"""The grounding eval on a slice of its pairs: a regression check with a threshold that can fail."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "grounding_eval.py"


def load():
    spec = importlib.util.spec_from_file_location("grounding_eval", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_slice_of_the_pairs_is_mostly_right(graph):
    module = load()
    pairs = module.load_pairs(every=5)  # every 5th pair: English and Chinese, faithful and each planted kind
    assert len(pairs) >= 100 and {p["lang"] for p in pairs} == {"en", "zh"}
    result = module.evaluate(pairs, graph)
    assert result["right"] >= 0.93, result["misses"]
    planted = {k: g for k, g in result["groups"].items() if k.startswith("plant:") and k != "plant:faithful"}
    assert all(g["fraction"] >= 0.85 for g in planted.values()), planted


def test_judging_counts_a_miss_and_a_false_mark():
    module = load()
    planted = {"expected": [{"start": 0, "end": 5, "kind": "dose"}]}
    assert module.judge(planted, [{"start": 1, "end": 4, "kind": "dose"}])["right"]
    assert not module.judge(planted, [{"start": 6, "end": 9, "kind": "dose"}])["right"]
    assert not module.judge({"expected": []}, [{"start": 0, "end": 1, "kind": "name"}])["right"]

"""The QC office development set: 34 hand-computed charts (Chinese and English) agree with the indicator and
VTE evaluation, and the published table is the one the script writes."""

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))


def test_hand_computed_indicators_and_vte_scores_agree(graph):
    from office_eval import DEVSET, evaluate, markdown

    rows = yaml.safe_load(DEVSET.read_text(encoding="utf-8"))["records"]
    assert len(rows) >= 30 and {r["record"]["id"][:2] for r in rows} == {"zh", "en"}
    results = evaluate(graph, rows)
    wrong = [(r["id"], r["got"], r["got_vte"]) for r in results if not (r["indicators_ok"] and r["vte_ok"])]
    assert wrong == []
    diseases = {key.split(".")[1] for r in results for key in r["indicators"]}
    assert {"ami", "hf", "cap", "stroke", "vte"} <= diseases
    assert {r["vte"]["model"] for r in results} == {"caprini", "padua"}
    assert (REPO / "benchmarks" / "data" / "OFFICE_DEVSET.md").read_text(encoding="utf-8") == markdown(results)

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))


def test_labeled_queries_point_at_servable_items(shipped_snapshot):
    queries = yaml.safe_load((REPO / "benchmarks" / "data" / "retrieval_queries.yaml").read_text())["queries"]
    assert len(queries) >= 60
    assert {"brand", "misspelling", "synonym", "chinese"} <= {q["type"] for q in queries}
    for query in queries:
        for item_id in query["relevant"]:
            assert shipped_snapshot.get(item_id) is not None, (query["query"], item_id)


def test_fusion_beats_either_ranking_alone(retriever):
    """Quality floor on the labeled set (latency is the benchmark's job, not this test's)."""
    from retrieval_eval import evaluate

    queries = yaml.safe_load((REPO / "benchmarks" / "data" / "retrieval_queries.yaml").read_text())["queries"]
    report = evaluate(retriever, queries, k=5)
    fused = report["fused"]["recall_at_k"]
    assert fused >= 0.9
    assert fused >= report["dense"]["recall_at_k"] and fused >= report["lexical"]["recall_at_k"]

import json

from copilot.cli import main
from knowledge.retrieval import tokenize


def test_results_carry_id_version_and_citation(retriever):
    results = retriever.search("how long after admission must the first course record be written", k=5)
    assert len(results) == 5
    for result in results:
        assert set(result) >= {"id", "version", "source", "text", "score", "kind"}
        assert result["source"]["title"] and result["source"]["url"]
    assert results == sorted(results, key=lambda r: -r["score"])


def test_exact_brand_names_are_never_missed(retriever):
    for query, expected in [("Lipitor", "drug.atorvastatin"), ("Glucophage", "drug.metformin"), ("Zoloft", "drug.sertraline")]:
        assert expected in [r["id"] for r in retriever.search(query, k=5)], query


def test_dense_finds_paraphrases_and_fusion_keeps_them(retriever):
    query = "blood thinner that needs INR checks"
    assert any("warfarin" in r["id"] for r in retriever.search(query, k=5, mode="dense"))
    assert any("warfarin" in r["id"] for r in retriever.search(query, k=5))


def test_chinese_queries(retriever):
    assert "drug.warfarin" in [r["id"] for r in retriever.search("华法林", k=3)]
    assert any(r["id"].startswith("time_limit.cn.") for r in retriever.search("首次病程记录 时限", k=3))


def test_retired_items_never_come_back(retriever, shipped_snapshot):
    retired = [i for i in shipped_snapshot.items.values() if i.status == "retired" and i.kind == "passage"]
    assert retired
    for item in retired:
        ids = [r["id"] for r in retriever.search(item.title + " " + item.text[:200], k=20)]
        assert item.id not in ids


def test_empty_query_returns_nothing(retriever):
    assert retriever.search("   ") == []


def test_tokenizer_keeps_codes_and_splits_chinese():
    assert "e11.9" in tokenize("Diagnosis E11.9 type 2 diabetes")
    assert tokenize("华法林出血") == ["华法", "法林", "林出", "出血"]


def test_search_command_prints_json(shipped_home, capsys, monkeypatch):
    monkeypatch.setenv("COPILOT_HOME", str(shipped_home))
    assert main(["knowledge", "search", "simvastatin with clarithromycin", "--k", "3", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 3
    assert all(set(r) == {"id", "version", "source", "text", "score"} for r in results)
    assert any(r["id"].startswith("ddi.") for r in results)

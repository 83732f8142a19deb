"""Evaluation: fact coverage, ROUGE-L and perplexity, base vs fine-tuned side by side."""

from __future__ import annotations

import json
import math

from finetune.evaluate import fact_coverage, rouge, summarise


def test_fact_coverage_counts_source_facts_kept_and_draft_facts_invented(graph):
    source = ("[doctor] are you still taking lisinopril twenty milligrams daily for your high blood pressure ?\n"
              "[patient] yes , and my diabetes is fine .")
    draft = "Hypertension: continue lisinopril 20 mg daily. Start metformin 500 mg twice daily."
    reference = "ASSESSMENT AND PLAN\nHypertension. Lisinopril 20 mg daily. Type 2 diabetes, stable."
    facts = fact_coverage(source, draft, reference, graph, ["drug", "dose", "diagnosis"])
    assert "drug:lisinopril" not in facts["unsupported"] and "dose:20 mg" not in facts["missed"]  # spoken dose matched
    assert {"drug:metformin", "dose:500 mg"} == set(facts["unsupported"])
    assert facts["missed"] and all(k.startswith("diagnosis:") for k in facts["missed"])  # diabetes left out
    assert facts["source_facts_in_draft"] == facts["source_facts"] - len(facts["missed"])
    only_drugs = fact_coverage(source, draft, reference, graph, ["drug"])
    assert only_drugs["source_facts"] == 1 and only_drugs["unsupported"] == ["drug:metformin"]


def test_summary_is_micro_averaged():
    def item(found, total, invented, drafted, score):
        return {"facts": {"source_facts": total, "source_facts_in_draft": found, "draft_facts": drafted,
                          "draft_facts_not_in_source": invented, "reference_facts": 0, "reference_facts_in_draft": 0},
                "rougeL_f1": score, "rougeLsum_f1": score, "generated_tokens": 10, "decode_tokens_per_s": 50.0,
                "finish_reason": "length"}

    summary = summarise([item(1, 1, 0, 1, 0.2), item(1, 9, 3, 4, 0.4)])
    assert summary["fact_coverage"] == round(2 / 10, 4)  # not the mean of 1.0 and 0.11
    assert summary["unsupported_share"] == round(3 / 5, 4)
    assert summary["reference_fact_recall"] is None
    assert abs(summary["rougeL_f1"] - 0.3) < 1e-9 and summary["finish_reasons"] == {"length": 2}


def test_rouge_l():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL", "rougeLsum"], use_stemmer=True)
    assert rouge(scorer, "Lisinopril 20 mg daily.", "Lisinopril 20 mg daily.") == (1.0, 1.0)
    low, _ = rouge(scorer, "Lisinopril 20 mg daily.", "Return in two weeks.")
    assert low == 0.0


def test_evaluation_compares_base_and_finetuned(exported_run, tiny_config, finetune_settings, tiny_checkpoint):
    from finetune.evaluate import evaluate

    run, export_report = exported_run
    lines = []
    report = evaluate(tiny_config, finetune_settings, run, base_model=str(tiny_checkpoint), progress=lines.append)
    assert json.loads(run.eval_report.read_text()) == report
    for side in ("base", "finetuned"):
        ppl = report["perplexity"][side]
        assert ppl["examples"] == 4 and ppl["answer_tokens"] > 0 and math.isfinite(ppl["perplexity"])
        assert math.isclose(math.exp(ppl["loss"]), ppl["perplexity"], rel_tol=1e-9)
        drafting = report["drafting"][side]
        assert drafting["encounters"] == 2 and 0 <= drafting["rougeL_f1"] <= 1
        assert drafting["generated_tokens_mean"] > 0
    assert report["perplexity"]["base"]["perplexity"] != report["perplexity"]["finetuned"]["perplexity"]
    # The LoRA run lowered the PyTorch validation loss; the exported INT8 model agrees on the direction.
    assert report["perplexity"]["finetuned"]["loss"] < report["perplexity"]["base"]["loss"]
    assert report["base_model"]["exported"] == str(finetune_settings.export_dir("tiny-llama", "int8"))
    assert report["finetuned_model"]["exported"] == export_report["exported"]
    ids = [e["id"] for e in report["per_encounter"]]
    assert len(ids) == 2 and ids == sorted(ids) and all(i.startswith("aci-bench:") and i.endswith(":note") for i in ids)
    assert all(isinstance(e["finetuned"]["draft"], str) and e["reference"] for e in report["per_encounter"])
    assert set(report["export_measurements"]) >= {"merged", "base", "runtime_adapter"}
    assert any("fact coverage" in line for line in lines)

"""`copilot finetune eval`: base model vs fine-tuned model, side by side, on held-out data.

- Perplexity of the exported OpenVINO models on the validation split (answer tokens only,
  the same labels as training), overall and per task.
- Drafting on held-out dialogue -> note encounters (ACI-Bench validation): each model, greedy,
  through copilot.engine.pipeline.Engine, writes the note; ROUGE-L against the reference note,
  and fact coverage: the share of the source dialogue's medications, doses and diagnoses that
  the draft states, and the share of the draft's such facts that the dialogue does not support.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path
from typing import Callable

from copilot.config import Settings
from finetune.config import FinetuneConfig
from finetune.dataset import example_from_row, load_dataset_dir, load_tokenizer
from finetune.paths import MissingInput, RunDir, resolve_base
from finetune.train import select_validation

Progress = Callable[[str], None]


class EvalError(RuntimeError):
    pass


# -- perplexity ---------------------------------------------------------------------------
def answer_nll(model, input_ids: list[int], labels: list[int]) -> tuple[float, int]:
    """Summed negative log-likelihood of the labelled (answer) tokens, and how many there are."""
    import torch

    ids = torch.tensor([input_ids], dtype=torch.long)
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, :-1].float()
    target = torch.tensor(labels[1:], dtype=torch.long)
    mask = target != -100
    if not mask.any():
        return 0.0, 0
    losses = torch.nn.functional.cross_entropy(logits[mask], target[mask], reduction="sum")
    return float(losses), int(mask.sum())


def perplexity(model_dir: Path, rows: list[dict], progress: Progress, label: str) -> dict:
    from optimum.intel import OVModelForCausalLM

    model = OVModelForCausalLM.from_pretrained(str(model_dir), compile=True)
    totals: dict[str, list[float]] = {}
    started = time.monotonic()
    for index, row in enumerate(rows, 1):
        nll, n = answer_nll(model, row["input_ids"], row["labels"])
        entry = totals.setdefault(row["task"], [0.0, 0])
        entry[0] += nll
        entry[1] += n
        if index % 8 == 0 or index == len(rows):
            progress(f"  perplexity {label}: {index}/{len(rows)} ({time.monotonic() - started:.0f} s)")
    nll_all = sum(v[0] for v in totals.values())
    tokens = sum(v[1] for v in totals.values())
    return {"loss": nll_all / tokens, "perplexity": math.exp(nll_all / tokens), "answer_tokens": tokens,
            "examples": len(rows),
            "by_task": {t: {"loss": v[0] / v[1], "perplexity": math.exp(v[0] / v[1]), "answer_tokens": v[1]}
                        for t, v in sorted(totals.items()) if v[1]}}


# -- fact coverage and ROUGE --------------------------------------------------------------
def fact_keys(text: str, graph, kinds: set[str], source_side: bool = False) -> list[str]:
    from copilot.drafting import facts

    if source_side and hasattr(facts, "normalize_spoken"):
        text = facts.normalize_spoken(text)  # "twenty milligrams" in a transcript -> "20 milligrams"
    return [f.key for f in facts.extract_facts(text, graph) if f.kind in kinds]


def fact_coverage(source: str, draft: str, reference: str, graph, kinds: list[str]) -> dict:
    """Counts for one draft: source facts stated in the draft, draft facts absent from the source."""
    kinds = set(kinds)
    source_keys = set(fact_keys(source, graph, kinds, source_side=True))
    draft_facts = fact_keys(draft, graph, kinds)
    draft_keys = set(draft_facts)
    reference_keys = set(fact_keys(reference, graph, kinds))
    unsupported = [k for k in draft_keys if k not in source_keys]
    return {"source_facts": len(source_keys), "source_facts_in_draft": len(source_keys & draft_keys),
            "draft_facts": len(draft_keys), "draft_facts_not_in_source": len(unsupported),
            "reference_facts": len(reference_keys), "reference_facts_in_draft": len(reference_keys & draft_keys),
            "missed": sorted(source_keys - draft_keys), "unsupported": sorted(unsupported)}


def _share(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def summarise(items: list[dict]) -> dict:
    """Micro-averaged shares over all encounters (every fact counts once), plus ROUGE-L means."""
    total = {k: sum(i["facts"][k] for i in items) for k in
             ("source_facts", "source_facts_in_draft", "draft_facts", "draft_facts_not_in_source",
              "reference_facts", "reference_facts_in_draft")}
    speeds = [i["decode_tokens_per_s"] for i in items if i.get("decode_tokens_per_s")]
    return {
        "encounters": len(items),
        "rougeL_f1": round(statistics.fmean(i["rougeL_f1"] for i in items), 4) if items else None,
        "rougeLsum_f1": round(statistics.fmean(i["rougeLsum_f1"] for i in items), 4) if items else None,
        "fact_coverage": _share(total["source_facts_in_draft"], total["source_facts"]),
        "unsupported_share": _share(total["draft_facts_not_in_source"], total["draft_facts"]),
        "reference_fact_recall": _share(total["reference_facts_in_draft"], total["reference_facts"]),
        "fact_counts": total,
        "generated_tokens_mean": round(statistics.fmean(i["generated_tokens"] for i in items), 1) if items else None,
        "decode_tokens_per_s_median": round(statistics.median(speeds), 2) if speeds else None,
        "finish_reasons": {r: sum(i["finish_reason"] == r for i in items) for r in {i["finish_reason"] for i in items}},
    }


def rouge(scorer, reference: str, draft: str) -> tuple[float, float]:
    scores = scorer.score(reference, draft)
    return scores["rougeL"].fmeasure, scores["rougeLsum"].fmeasure


def draft_notes(model_dir: Path, examples: list, tokenizer, config: FinetuneConfig, max_new_tokens: int, graph,
                progress: Progress, label: str) -> list[dict]:
    from rouge_score import rouge_scorer

    from copilot.engine.pipeline import Engine, GenerationRequest
    from finetune.chat_format import fit_source

    scorer = rouge_scorer.RougeScorer(["rougeL", "rougeLsum"], use_stemmer=True)
    engine = Engine(model_dir, max_queue=1)
    results = []
    try:
        for index, example in enumerate(examples, 1):
            source, shortened = fit_source(tokenizer, example, config.eval.max_prompt_tokens)
            request = GenerationRequest(messages=example.messages(source, with_answer=False),
                                        max_new_tokens=max_new_tokens, temperature=0.0)
            result = engine.generate(request)
            draft = result.text.strip()
            rouge_l, rouge_lsum = rouge(scorer, example.reference, draft)
            results.append({
                "id": example.id, "draft": draft, "finish_reason": result.finish_reason,
                "prompt_tokens": result.metrics.prompt_tokens, "generated_tokens": result.metrics.generated_tokens,
                "decode_tokens_per_s": result.metrics.decode_tokens_per_s, "source_shortened": shortened,
                "rougeL_f1": round(rouge_l, 4), "rougeLsum_f1": round(rouge_lsum, 4),
                "facts": fact_coverage(example.source_text, draft, example.reference, graph, config.eval.fact_kinds),
            })
            progress(f"  draft {label} {index}/{len(examples)} {example.id}: {result.metrics.generated_tokens} tokens, "
                     f"ROUGE-L {rouge_l:.3f}")
    finally:
        engine.close()
    return results


def _graph(settings: Settings):
    from knowledge.graph import KnowledgeGraph
    from knowledge.snapshot import NoSnapshot, Snapshot

    try:
        return KnowledgeGraph(Snapshot.current(settings.knowledge_dir))
    except NoSnapshot:
        return None


def evaluate(config: FinetuneConfig, settings: Settings, run: RunDir, base_model: str | None = None,
             limit: int | None = None, max_new_tokens: int | None = None, perplexity_examples: int | None = None,
             task: str = "note", progress: Progress = print) -> dict:
    started = time.monotonic()
    data, manifest = load_dataset_dir(run)
    if not run.export_report.is_file():
        raise MissingInput(f"no export report in {run.root}; run `copilot finetune export` first")
    exported = json.loads(run.export_report.read_text())
    tuned_dir = Path(exported["exported"])
    base = resolve_base(settings, base_model or config.base_model, config.export.weight_format)
    base_dir = base.require_exported()
    if not (tuned_dir / "openvino_model.xml").is_file():
        raise MissingInput(f"the fine-tuned export {tuned_dir} is missing; run `copilot finetune export` again")
    limit = limit or config.eval.limit
    max_new_tokens = max_new_tokens or config.eval.max_new_tokens
    validation = data["validation"]
    graph = _graph(settings)

    report: dict = {"config": config.name, "base_model": {"name": base.name, "exported": str(base_dir)},
                    "finetuned_model": {"name": exported["name"], "exported": str(tuned_dir)},
                    "knowledge_graph_for_facts": graph.snapshot.id if graph else None}
    if run.metrics.is_file():
        metrics = json.loads(run.metrics.read_text())
        report["training"] = {k: metrics.get(k) for k in ("validation_loss_before", "validation_loss_after",
                                                            "global_step", "train_runtime_s", "peak_rss_mb")}

    count = perplexity_examples if perplexity_examples is not None else config.eval.perplexity_examples
    if count > 0 and len(validation):
        rows_index = select_validation(validation, count, config.data.split_salt)
        rows = [validation[i] for i in rows_index]
        progress(f"perplexity on {len(rows)} validation examples (answer tokens), "
                 f"OpenVINO {config.export.weight_format}")
        report["perplexity"] = {"base": perplexity(base_dir, rows, progress, "base"),
                                "finetuned": perplexity(tuned_dir, rows, progress, "fine-tuned")}

    candidates = sorted((i for i, t in enumerate(validation["task"]) if t == task), key=lambda i: validation[i]["id"])
    if not candidates:
        raise EvalError(f"the validation split has no {task!r} examples to draft (ACI-Bench dialogue -> note "
                        "pairs come from --aci-bench; project records give task record_note)")
    examples = [example_from_row(validation[i]) for i in candidates[:limit]]
    tokenizer = load_tokenizer(Path(manifest["tokenizer"]["checkpoint"]))
    progress(f"drafting {len(examples)} held-out {task} examples with each model (greedy, {max_new_tokens} new tokens)")
    drafts = {"base": draft_notes(base_dir, examples, tokenizer, config, max_new_tokens, graph, progress, "base"),
              "finetuned": draft_notes(tuned_dir, examples, tokenizer, config, max_new_tokens, graph, progress,
                                       "fine-tuned")}
    report["drafting"] = {"task": task, "limit": limit, "max_new_tokens": max_new_tokens,
                          "fact_kinds": list(config.eval.fact_kinds),
                          "base": summarise(drafts["base"]), "finetuned": summarise(drafts["finetuned"])}
    report["per_encounter"] = [{"id": e.id, "reference": e.reference, "base": b, "finetuned": f}
                               for e, b, f in zip(examples, drafts["base"], drafts["finetuned"])]
    if "measurements" in exported:
        report["export_measurements"] = {
            label: {k: v.get(k) for k in ("decode_tokens_per_s", "ttft_s", "peak_rss_mb", "load_s", "error",
                                          "agreement_with_merged")}
            for label, v in exported["measurements"].items() if isinstance(v, dict)}
    report["seconds"] = round(time.monotonic() - started, 1)
    run.eval_report.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    for line in format_summary(report):
        progress(line)
    return report


def format_summary(report: dict) -> list[str]:
    lines = []
    if "training" in report and report["training"].get("validation_loss_before") is not None:
        t = report["training"]
        lines.append(f"validation loss (PyTorch, training subset): {t['validation_loss_before']:.4f} -> "
                     f"{t['validation_loss_after']:.4f}")
    if "perplexity" in report:
        p = report["perplexity"]
        lines.append(f"perplexity (OpenVINO, {p['base']['examples']} validation examples): base "
                     f"{p['base']['perplexity']:.3f} -> fine-tuned {p['finetuned']['perplexity']:.3f}")
    d = report.get("drafting")
    if d:
        lines.append(f"{'':28}{'base':>12}{'fine-tuned':>12}")
        rows = (("rougeL_f1", "ROUGE-L F1"), ("rougeLsum_f1", "ROUGE-Lsum F1"),
                ("fact_coverage", "fact coverage (source)"), ("unsupported_share", "draft facts not in source"),
                ("reference_fact_recall", "reference facts in draft"), ("generated_tokens_mean", "tokens/draft"))
        for key, name in rows:
            b, f = d["base"].get(key), d["finetuned"].get(key)
            lines.append(f"{name:28}{'n/a' if b is None else b:>12}{'n/a' if f is None else f:>12}")
    return lines

"""`copilot finetune export`: merge the adapter and export through the same path as the base model.

1. Merged: the LoRA adapter is folded into the base weights (peft ``merge_and_unload``) and
   saved as a standalone transformers checkpoint (``<work-dir>/merged``), then exported to
   OpenVINO with ``copilot.engine.prepare.prepare`` (architecture and disk checks, optimum-intel
   export, tokenizer agreement check), so it is served like any prepared model.
2. Runtime adapter: the base model's existing OpenVINO export plus the adapter, applied by
   OpenVINO GenAI at load time (``openvino_genai.Adapter`` / ``AdapterConfig``). The adapter is
   written with peft's scaling (lora_alpha / r) folded into B. With openvino-genai 2026.4 the
   alpha that reproduces the merged model depends on the base export (RUNTIME_ALPHA): 1 on an
   fp16 base, but 0.5 on an INT8 weight-compressed base, where an adapter given alpha a acts as
   2·a·B·A. Measured with greedy decoding against the merged fp16 export (40 of 40 tokens equal
   at the right alpha, 2 of 40 at the other); the report measures both alphas every time.

Both variants, and the base model, are measured in separate processes (decode tokens/s, time to
first token, peak RSS) on the same prompt; greedy outputs are compared with the merged model's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from copilot.config import Settings
from finetune.config import FinetuneConfig
from finetune.paths import RunDir, resolve_base

Progress = Callable[[str], None]
RUNTIME_ADAPTER = "openvino_adapter.safetensors"
RUNTIME_ALPHA = {"fp16": 1.0, "int8": 0.5, "int4": 0.5}  # int4: assumed like int8 (compressed), not measured


class ExportError(RuntimeError):
    pass


def merge_adapter(checkpoint: Path, adapter: Path, out: Path, progress: Progress = print) -> Path:
    """Base checkpoint + peft adapter -> a standalone checkpoint (written to a temporary folder, then renamed)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(f"merging {adapter} into {checkpoint}")
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype="auto")
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    if merged.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ExportError(f"unexpected dtype after merge: {merged.dtype}")
    staging = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    merged.save_pretrained(str(staging), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(checkpoint)).save_pretrained(str(staging))
    (staging / "copilot-finetune.json").write_text(json.dumps(
        {"base_checkpoint": str(checkpoint), "adapter": str(adapter)}, indent=2), encoding="utf-8")
    old = out.with_name(out.name + f".old-{os.getpid()}")
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def write_runtime_adapter(adapter: Path) -> tuple[Path, float]:
    """peft adapter -> safetensors for OpenVINO GenAI, with the scaling folded into B (applied with alpha 1)."""
    import torch
    from safetensors.torch import load_file, save_file

    config = json.loads((adapter / "adapter_config.json").read_text())
    if config.get("use_rslora") or config.get("use_dora") or config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ExportError("runtime adapters support plain LoRA only (no rsLoRA, DoRA or per-layer rank/alpha)")
    scale = float(config["lora_alpha"]) / float(config["r"])
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    out = {}
    for name, tensor in tensors.items():
        tensor = tensor.to(torch.float32)
        out[name] = (tensor * scale).contiguous() if ".lora_B." in name else tensor.contiguous()
    path = adapter / RUNTIME_ADAPTER
    save_file(out, str(path))
    return path, scale


def _bench(model: Path, prompt_file: Path, max_new_tokens: int, adapter: Path | None = None,
           alpha: float = 1.0) -> dict:
    command = [sys.executable, "-m", "finetune.runtime_bench", "--model", str(model), "--prompt-file", str(prompt_file),
               "--max-new-tokens", str(max_new_tokens)]
    if adapter is not None:
        command += ["--adapter", str(adapter), "--alpha", str(alpha)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = "\n".join((result.stderr or "").strip().splitlines()[-8:])
        return {"error": f"measurement process failed (exit {result.returncode}): {tail}"}
    report = json.loads(lines[-1])
    report["stderr_warnings"] = [line for line in (result.stderr or "").splitlines() if "WARNING" in line][:10]
    return report


def _agreement(reference: list[int], other: list[int]) -> dict:
    prefix = 0
    for a, b in zip(reference, other):
        if a != b:
            break
        prefix += 1
    same = sum(a == b for a, b in zip(reference, other))
    return {"common_prefix_tokens": prefix, "position_matches": same, "of": len(reference)}


def bench_prompt(run: RunDir, tokenizer_dir: Path) -> str:
    """A drafting prompt from the validation split (the model's real job), rendered with its chat template."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from finetune.chat_format import fit_source
    from finetune.dataset import example_from_row

    validation = load_from_disk(str(run.dataset))["validation"]
    tasks = validation["task"]
    notes = [i for i, t in enumerate(tasks) if t == "note"]
    index = (notes or [i for i, t in enumerate(tasks) if t != "kg_qa"] or [0])[0]
    example = example_from_row(validation[index])
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    source, _ = fit_source(tokenizer, example, 512)
    return tokenizer.apply_chat_template(example.messages(source, with_answer=False), tokenize=False,
                                         add_generation_prompt=True)


def export(config: FinetuneConfig, settings: Settings, run: RunDir, base_model: str | None = None,
           name: str | None = None, measure: bool = True, progress: Progress = print) -> dict:
    from copilot.engine.prepare import PrepareError, prepare

    started = time.monotonic()
    run.require_adapter()
    weight_format = config.export.weight_format
    base = resolve_base(settings, base_model or config.base_model, weight_format)
    checkpoint = base.require_checkpoint()
    name = name or config.export.name or f"ft-{run.root.name}"
    merged = merge_adapter(checkpoint, run.adapter, run.merged, progress)
    merge_s = time.monotonic() - started
    try:
        prepared = prepare(settings, model=merged, weight_format=weight_format, name=name, progress=progress)
    except PrepareError as exc:
        raise ExportError(f"OpenVINO export of the merged model failed: {exc}") from None
    export_s = time.monotonic() - started - merge_s
    report = {"name": name, "weight_format": weight_format, "merged_checkpoint": str(merged),
              "exported": str(prepared.path), "serve": f"COPILOT_MODEL={name} copilot serve",
              "merge_s": round(merge_s, 1), "export_s": round(export_s, 1), "base_model": base.name}
    if config.export.runtime_adapter:
        adapter_file, scale = write_runtime_adapter(run.adapter)
        report["runtime_adapter"] = {"file": str(adapter_file), "scale_folded_into_B": scale,
                                     "alpha": RUNTIME_ALPHA[weight_format],
                                     "base_export": str(base.exported),
                                     "load": "openvino_genai.LLMPipeline(base_export, 'CPU', adapters="
                                             "openvino_genai.AdapterConfig(openvino_genai.Adapter(file), alpha))"}
    if measure:
        report["measurements"] = measure_variants(run, base, prepared.path, report.get("runtime_adapter"),
                                                  config.export.bench_max_new_tokens, progress)
    report["seconds"] = round(time.monotonic() - started, 1)
    run.export_report.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    progress(f"exported {name}: {prepared.path}; report {run.export_report}")
    return report


def measure_variants(run: RunDir, base, merged_export: Path, runtime: dict | None, max_new_tokens: int,
                     progress: Progress) -> dict:
    prompt_file = run.root / "bench-prompt.txt"
    prompt_file.write_text(bench_prompt(run, merged_export), encoding="utf-8")
    results: dict = {"prompt_file": str(prompt_file), "max_new_tokens": max_new_tokens,
                     "agreement_note": "greedy tokens equal to the merged export's, from the start; the merged "
                                       "export is quantised too, so near-tie tokens can differ either way"}
    variants = [("merged", merged_export, None, None)]
    if base.exported.joinpath("openvino_model.xml").is_file():
        variants.append(("base", base.exported, None, None))
        if runtime:
            other = 1.0 if runtime["alpha"] != 1.0 else 0.5
            variants.append(("runtime_adapter", base.exported, Path(runtime["file"]), runtime["alpha"]))
            variants.append((f"runtime_adapter_alpha_{other:g}", base.exported, Path(runtime["file"]), other))
    elif runtime:
        results["runtime_adapter"] = {"error": f"base model has no OpenVINO export at {base.exported}; "
                                               f"run `{base.prepare_command}`"}
    for label, model, adapter, alpha in variants:
        progress(f"measuring {label}: {model}" + (f" + {adapter.name} (alpha {alpha})" if adapter else ""))
        results[label] = _bench(model, prompt_file, max_new_tokens, adapter, 1.0 if alpha is None else alpha)
    reference = results["merged"].get("token_ids")
    labels = [label for label, *_ in variants]
    if "runtime_adapter" in results and "runtime_adapter" not in labels:
        labels.append("runtime_adapter")
    for label in labels[1:]:
        if reference and results.get(label, {}).get("token_ids"):
            results[label]["agreement_with_merged"] = _agreement(reference, results[label]["token_ids"])
    for label in labels:
        entry = results.get(label, {})
        entry.pop("token_ids", None)
        if "error" in entry:
            progress(f"  {label}: FAILED {entry['error']}")
        elif entry:
            progress(f"  {label}: {entry['decode_tokens_per_s']} tok/s decode, TTFT {entry['ttft_s']} s, "
                     f"peak RSS {entry['peak_rss_mb']:.0f} MB, load {entry['load_s']} s"
                     + (f", agreement with merged {entry['agreement_with_merged']}" if "agreement_with_merged" in entry
                        else ""))
    return results

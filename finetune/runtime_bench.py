"""Measure one OpenVINO GenAI model variant in a fresh process: load time, speed, peak RSS, greedy text.

Run as ``python -m finetune.runtime_bench --model DIR [--adapter FILE] --prompt-file F``; prints one
JSON line. A separate process per variant, so peak RSS is that variant's alone and one failure
(an adapter the runtime cannot apply) cannot take the caller down.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM): unlike ru_maxrss it is not inherited across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(model: Path, prompt: str, max_new_tokens: int, adapter: Path | None = None, alpha: float = 1.0,
            device: str = "CPU") -> dict:
    import openvino_genai

    started = time.monotonic()
    if adapter is not None:
        lora = openvino_genai.Adapter(str(adapter))
        pipeline = openvino_genai.LLMPipeline(str(model), device, adapters=openvino_genai.AdapterConfig(lora, alpha))
    else:
        pipeline = openvino_genai.LLMPipeline(str(model), device)
    load_s = time.monotonic() - started
    config = pipeline.get_generation_config()
    config.do_sample = False
    config.apply_chat_template = False
    config.max_new_tokens = 4
    pipeline.generate(["Warm-up: the first inference compiles kernels."], config)  # not the prompt: no prefix reuse
    config.max_new_tokens = max_new_tokens
    config.min_new_tokens = max_new_tokens  # same number of decode steps for every variant
    result = pipeline.generate([prompt], config)
    perf = result.perf_metrics
    generated = int(perf.get_num_generated_tokens())
    ttft = perf.get_ttft().mean / 1000
    decode = perf.get_generate_duration().mean / 1000 - ttft
    encoded = pipeline.get_tokenizer().encode(result.texts[0], add_special_tokens=False)
    tokens = encoded.input_ids.data.flatten().tolist()
    return {"model": str(model), "adapter": str(adapter) if adapter else None, "alpha": alpha if adapter else None,
            "load_s": round(load_s, 3), "prompt_tokens": int(perf.get_num_input_tokens()),
            "generated_tokens": generated, "ttft_s": round(ttft, 4),
            "decode_tokens_per_s": round((generated - 1) / decode, 2) if generated > 1 and decode > 0 else None,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "text": result.texts[0], "token_ids": tokens}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--adapter", type=Path)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--prompt-file", type=Path, required=True)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args(argv)
    try:
        report = measure(args.model, args.prompt_file.read_text(encoding="utf-8"), args.max_new_tokens,
                         args.adapter, args.alpha)
    except Exception as exc:  # reported to the parent as data: why this variant could not run
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(report, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

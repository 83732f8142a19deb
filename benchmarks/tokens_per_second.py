"""The benchmark script reporting tokens per second: PyTorch vs OpenVINO (vs llama.cpp), one run.

Same model, same token ids, greedy, exactly N new tokens for every backend. Each backend
runs in its own child process so its peak RSS is its own. Reports decode tokens/s, time
to first token, seconds to write a 300-word note, peak RSS, weight bytes, and the
roofline fraction against the measured memory read bandwidth.

    python benchmarks/tokens_per_second.py --quick --out r.json
    python benchmarks/tokens_per_second.py --synthetic-shape 1b --out r.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]

import copilot.config  # noqa: E402,F401  (offline environment)
from copilot.config import Settings  # noqa: E402

DATASETS = Settings().datasets_dir


# --- prompts ---------------------------------------------------------------------------
def corpus_texts() -> tuple[list[str], list[str]]:
    """Clinical dialogues and notes (ACI-Bench) when present, else the shipped knowledge passages."""
    aci = DATASETS / "aci-bench" / "train.json"
    if aci.is_file():
        data = json.loads(aci.read_text(encoding="utf-8"))["data"]
        return [row["src"] for row in data], [row["tgt"] for row in data]
    import yaml

    texts = []
    for source in sorted((REPO / "knowledge" / "sources").glob("*.yaml")):
        doc = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
        texts += [item["text"] for item in doc.get("items", []) if isinstance(item, dict) and item.get("text")]
    if not texts:
        raise SystemExit("no prompt corpus: neither ../shared/datasets/aci-bench nor knowledge passages found")
    return texts, texts


def prompt_ids(tokenizer, length: int, variant: int) -> list[int]:
    """Exactly `length` token ids of real clinical text, different for each variant (no cache hits)."""
    dialogues, _ = corpus_texts()
    ids: list[int] = []
    index = variant * 7
    while len(ids) < length + variant * 97:
        ids += tokenizer.encode(dialogues[index % len(dialogues)] + "\n\n", add_special_tokens=False)
        index += 1
    start = variant * 97
    return ids[start:start + length]


def tokens_per_word(tokenizer) -> float:
    _, notes = corpus_texts()
    sample = notes[:20]
    return sum(len(tokenizer.encode(n, add_special_tokens=False)) for n in sample) / sum(len(n.split()) for n in sample)


# --- worker (runs in a child process) ---------------------------------------------------
class FastTokenizer:
    """tokenizer.json through the `tokenizers` library: no torch import, so an OpenVINO or
    llama.cpp worker's peak RSS is its own and not PyTorch's."""

    def __init__(self, checkpoint: str):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(Path(checkpoint) / "tokenizer.json"))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


def worker(spec: dict) -> dict:
    import backends

    tokenizer = FastTokenizer(spec["checkpoint"])
    started = time.perf_counter()
    if spec["kind"] == "pytorch":
        backend = backends.PyTorchBackend(Path(spec["checkpoint"]))
    elif spec["kind"] == "openvino":
        backend = backends.OpenVINOBackend(Path(spec["path"]), spec["backend"])
    elif spec["kind"] == "llama.cpp":
        backend = backends.LlamaCppBackend(Path(spec["path"]), spec["backend"])
    elif spec["kind"] == "prompt-lookup":
        return prompt_lookup_gain(spec, tokenizer)
    else:
        raise ValueError(spec["kind"])
    load_s = time.perf_counter() - started
    backend.run(prompt_ids(tokenizer, 32, 99), 8)  # warm-up: compile, allocate
    runs = []
    for length in spec["input_lengths"]:
        samples = [backend.run(prompt_ids(tokenizer, length, r), spec["new_tokens"]) for r in range(spec["repeats"])]
        runs.append({"input_tokens": length,
                     "ttft_s": statistics.median(s[0] for s in samples),
                     "decode_tokens_per_s": statistics.median(s[1] for s in samples)})
        print(f"  {spec['backend']:<18} {length:>5} in: ttft {runs[-1]['ttft_s']:.3f} s, "
              f"decode {runs[-1]['decode_tokens_per_s']:.2f} tok/s", file=sys.stderr, flush=True)
    return {"runs": runs, "weights_bytes": int(backend.weights_bytes), "load_s": load_s, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's high-water RSS. Not ru_maxrss: Linux carries that across fork+exec, so a
    worker would report the parent's peak (the orchestrator that built a 5 GB model)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


EMBEDDING_BYTES_PER_WEIGHT = {"pytorch-fp32": 4, "openvino-int8": 1, "openvino-int4": 1, "openvino-fp16": 2}


def bytes_read_per_token(checkpoint: str, backend: str, weights_bytes: int) -> int:
    """Weights read to decode one token: all of them, except an untied input embedding table,
    of which only one row is read (optimum-intel keeps embeddings at 8 bits in INT4 exports)."""
    config = json.loads((Path(checkpoint) / "config.json").read_text())
    if config.get("tie_word_embeddings", True) or backend not in EMBEDDING_BYTES_PER_WEIGHT:
        return weights_bytes
    return weights_bytes - config["vocab_size"] * config["hidden_size"] * EMBEDDING_BYTES_PER_WEIGHT[backend]


def prompt_lookup_gain(spec: dict, tokenizer) -> dict:
    """Drafting copies the transcript: greedy with and without prompt lookup, same output required."""
    sys.path.insert(0, str(REPO))
    from copilot.engine.pipeline import Engine, GenerationRequest

    dialogues, _ = corpus_texts()
    results = {}
    for mode in (False, True):
        engine = Engine(spec["path"], prompt_lookup=mode)
        texts, rates, ttfts = [], [], []
        for dialogue in dialogues[: spec["repeats"] + 1]:
            excerpt = tokenizer.decode(tokenizer.encode(dialogue, add_special_tokens=False)[:700])
            request = GenerationRequest(messages=[
                {"role": "system", "content": "You are a clinical scribe. Write only facts stated in the transcript."},
                {"role": "user", "content": "Transcript:\n" + excerpt +
                 "\n\nWrite the HISTORY OF PRESENT ILLNESS section of the clinical note."}],
                max_new_tokens=spec["new_tokens"])
            result = engine.generate(request)
            texts.append(result.text)
            rates.append(result.metrics.generated_tokens / result.metrics.total_s)
            ttfts.append(result.metrics.ttft_s)
        engine.close()
        results[mode] = (texts[1:], statistics.median(rates[1:]), statistics.median(ttfts[1:]))
    plain, lookup = results[False], results[True]
    return {"prompt_lookup": {
        "model": spec["model"], "prompts": len(plain[0]), "max_new_tokens": spec["new_tokens"],
        "plain_tokens_per_s": plain[1], "prompt_lookup_tokens_per_s": lookup[1],
        "speedup": lookup[1] / plain[1], "same_output": plain[0] == lookup[0]}}


def run_worker(spec: dict, timeout: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    done = subprocess.run(command, stdout=subprocess.PIPE, timeout=timeout, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{spec['backend']} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- orchestration ----------------------------------------------------------------------
def machine_info(bandwidth_gbs: float) -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bandwidth_gbs": round(bandwidth_gbs, 2)}


def model_plans(args, settings: Settings) -> list[dict]:
    from copilot.engine.prepare import MANIFEST, prepare

    formats = ["int8"] if args.no_int4 else ["int8", "int4"]
    plans = []
    if args.model:
        for path in args.model:
            manifest = json.loads((Path(path) / MANIFEST).read_text())
            plans.append({"model": manifest["name"], "checkpoint": manifest["checkpoint"],
                          "openvino": {manifest["weight_format"]: str(path)}, "gguf": None})
    if args.synthetic_shape or not args.model:
        default = prepare(settings, weight_format="int8", progress=lambda m: print(m, file=sys.stderr))
    if not args.model:
        exported = {fmt: str(prepare(settings, weight_format=fmt, progress=lambda m: None).path) for fmt in formats}
        from copilot.engine.prepare import embedded_gguf

        plans.append({"model": settings.model, "checkpoint": str(settings.checkpoint_dir()),
                      "openvino": exported, "gguf": str(embedded_gguf())})
    if args.synthetic_shape:
        import synthetic

        name = f"synthetic-{args.synthetic_shape}"
        checkpoint = synthetic.build(args.synthetic_shape, settings.models_dir / name / "hf",
                                     Path(default.manifest["checkpoint"]))
        exported = {fmt: str(prepare(settings, model=checkpoint, weight_format=fmt, name=name,
                                     progress=lambda m: print(m, file=sys.stderr)).path) for fmt in formats}
        plans.append({"model": name, "checkpoint": str(checkpoint), "openvino": exported, "gguf": None})
    return plans


def backend_specs(plan: dict, args, settings: Settings) -> list[dict]:
    common = {"model": plan["model"], "checkpoint": plan["checkpoint"], "input_lengths": args.input_lengths,
              "new_tokens": args.new_tokens, "repeats": args.repeats}
    specs = [dict(common, kind="pytorch", backend="pytorch-fp32")]
    specs += [dict(common, kind="openvino", backend=f"openvino-{fmt}", path=path) for fmt, path in plan["openvino"].items()]
    if plan["gguf"] and not args.no_llama_cpp:
        try:
            import backends

            q8 = backends.quantize_gguf(Path(plan["gguf"]), settings.models_dir / plan["model"] / "gguf" / "q8_0.gguf")
            specs += [dict(common, kind="llama.cpp", backend="llama.cpp-q4_1", path=plan["gguf"]),
                      dict(common, kind="llama.cpp", backend="llama.cpp-q8_0", path=str(q8))]
        except ImportError:
            print("llama.cpp peer skipped: llama-cpp-python is not installed (`make peer` builds it)", file=sys.stderr)
    return specs


def write_reports(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    lines = [f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
             f"{results['machine']['memory_bandwidth_gbs']} GB/s read bandwidth", "",
             "| model | backend | input | TTFT s | decode tok/s | 300-word note s | peak RSS MB | weights MB | roofline |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for run in results["runs"]:
        lines.append(f"| {run['model']} | {run['backend']} | {run['input_tokens']} | {run['ttft_s']:.3f} | "
                     f"{run['decode_tokens_per_s']:.2f} | {run['note_300_words_s']:.1f} | {run['peak_rss_mb']:.0f} | "
                     f"{run['weights_bytes'] / 1e6:.0f} | {run['roofline_fraction']:.2f} |")
    pld = results.get("prompt_lookup")
    if pld:
        lines += ["", f"Prompt lookup on {pld['model']} (drafting an HPI from a transcript, greedy, "
                      f"{pld['prompts']} prompts): {pld['plain_tokens_per_s']:.1f} -> {pld['prompt_lookup_tokens_per_s']:.1f} "
                      f"tok/s end to end ({pld['speedup']:.2f}x), same output: {pld['same_output']}"]
    table = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(table)
    print(table)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    models = sorted({r["model"] for r in results["runs"]})
    figure, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.2), squeeze=False)
    for axis, model in zip(axes[0], models):
        for backend in sorted({r["backend"] for r in results["runs"] if r["model"] == model}):
            rows = [r for r in results["runs"] if r["model"] == model and r["backend"] == backend]
            axis.plot([r["input_tokens"] for r in rows], [r["decode_tokens_per_s"] for r in rows], marker="o", label=backend)
        axis.set_xscale("log", base=2)
        axis.set_title(model)
        axis.set_xlabel("input tokens")
        axis.set_ylabel("decode tokens/s")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(out.with_suffix(".png"), dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tokens_per_second.json"),
                        help="results JSON; a .md table and a .png plot are written beside it")
    parser.add_argument("--quick", action="store_true", help="reduced set (embedded model, 2 lengths, 64 tokens): < 5 min")
    parser.add_argument("--synthetic-shape", choices=["1b", "tiny"], help="also benchmark a random-weight Llama of this shape")
    parser.add_argument("--model", action="append", help="an exported OpenVINO model dir (repeatable); its "
                        "copilot-model.json names the checkpoint used for the PyTorch run")
    parser.add_argument("--input-lengths", type=int, nargs="+", default=[128, 512, 1024, 2048])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per point; the median is reported")
    parser.add_argument("--no-int4", action="store_true", help="skip OpenVINO INT4")
    parser.add_argument("--no-llama-cpp", action="store_true", help="skip the llama.cpp peer even if installed")
    parser.add_argument("--no-prompt-lookup", action="store_true", help="skip the prompt-lookup measurement")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per backend")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.quick:
        args.input_lengths, args.new_tokens, args.repeats = [128, 1024], 64, 1

    from membw import read_bandwidth_gbs

    settings = Settings()
    started = time.perf_counter()
    # Measured before and after the runs; the higher is kept, since a transient load on the
    # machine can only lower a reading, and an underestimate would flatter every fraction.
    bandwidth = read_bandwidth_gbs(passes=3 if args.quick else 8)
    print(f"memory read bandwidth: {bandwidth:.1f} GB/s", file=sys.stderr)
    results = {"machine": machine_info(bandwidth), "runs": [],
               "settings": {"input_lengths": args.input_lengths, "new_tokens": args.new_tokens,
                            "repeats": args.repeats, "greedy": True}}
    for plan in model_plans(args, settings):
        per_word = tokens_per_word(FastTokenizer(plan["checkpoint"]))
        note_tokens = round(300 * per_word)
        for spec in backend_specs(plan, args, settings):
            print(f"{plan['model']}: {spec['backend']}", file=sys.stderr, flush=True)
            try:
                measured = run_worker(spec, args.timeout)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f"  skipped: {exc}", file=sys.stderr)
                results.setdefault("failed", []).append({"model": plan["model"], "backend": spec["backend"], "error": str(exc)})
                continue
            per_token = bytes_read_per_token(plan["checkpoint"], spec["backend"], measured["weights_bytes"])
            for run in measured["runs"]:
                ceiling = bandwidth * 1e9 / per_token
                results["runs"].append({
                    "backend": spec["backend"], "model": plan["model"], "input_tokens": run["input_tokens"],
                    "new_tokens": args.new_tokens, "ttft_s": round(run["ttft_s"], 4),
                    "decode_tokens_per_s": round(run["decode_tokens_per_s"], 3),
                    "note_300_words_s": round(run["ttft_s"] + (note_tokens - 1) / run["decode_tokens_per_s"], 2),
                    "peak_rss_mb": round(measured["peak_rss_mb"], 1), "weights_bytes": measured["weights_bytes"],
                    "bytes_read_per_token": per_token,
                    "roofline_fraction": float(f"{run['decode_tokens_per_s'] / ceiling:.3g}")})
        if plan["model"] == settings.model and not args.no_prompt_lookup:
            spec = {"kind": "prompt-lookup", "backend": "openvino-int8 prompt lookup", "model": plan["model"],
                    "checkpoint": plan["checkpoint"], "path": plan["openvino"]["int8"],
                    "new_tokens": 128 if args.quick else 256, "repeats": 2 if args.quick else 4}
            print(f"{plan['model']}: prompt lookup", file=sys.stderr, flush=True)
            results.update(run_worker(spec, args.timeout))
    final = read_bandwidth_gbs(passes=3 if args.quick else 8)
    print(f"memory read bandwidth (end): {final:.1f} GB/s", file=sys.stderr)
    if final > bandwidth:
        for run in results["runs"]:
            run["roofline_fraction"] = float(f"{run['roofline_fraction'] * bandwidth / final:.3g}")
        bandwidth = final
    results["machine"]["memory_bandwidth_gbs"] = round(bandwidth, 2)
    results["settings"]["note_300_words_tokens_per_word"] = round(per_word, 3)
    results["settings"]["wall_s"] = round(time.perf_counter() - started, 1)
    write_reports(results, args.out)
    return 0 if results["runs"] else 1


if __name__ == "__main__":
    sys.exit(main())

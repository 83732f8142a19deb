"""`copilot finetune ...`: the fine-tuning pipeline's command line (registered by copilot/cli.py)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

EPILOG = """\
pipeline (each step reads the previous one's output from the work directory):
  prepare   de-identify (every example passes finetune/deid's gate; refusals are counted),
            build dialogue->note, dialogue->section, record->note and knowledge-graph QA pairs,
            split train/validation by encounter (hash of the encounter id), tokenise with the
            base model's chat template (loss on answer tokens only) -> dataset/ + manifest.json
  train     LoRA (peft) on CPU: validation loss before and during training, checkpoints
            (--resume continues the last one) -> adapter/, checkpoints/, metrics.json, loss.png
  export    merge the adapter into a standalone checkpoint (merged/) and export it to OpenVINO
            through `copilot model prepare`'s code path (COPILOT_HOME/models/<name>/); also
            writes a runtime adapter for openvino_genai and measures tokens/s and peak RSS
            of merged, base and base + runtime adapter -> export.json
  eval      base vs fine-tuned, side by side: perplexity on the validation split, and on
            held-out ACI-Bench encounters ROUGE-L and fact coverage of greedy drafts -> eval.json
  run       all four in order (starts training afresh unless --resume) -> run.json with times

work directory: --work-dir, default COPILOT_HOME/finetune/<run-name> (run name: the config's name).
configs: finetune/configs/<name>.yaml (smollm2-135m: the embedded default on a small CPU;
qwen2.5-7b-instruct, llama-3-8b-instruct: 6-8B targets; tiny: tests). See finetune/README.md.

examples:
  copilot model prepare                                  # the base model first
  copilot knowledge build                                # knowledge snapshot for KG QA
  copilot finetune run --config smollm2-135m             # whole pipeline, < 30 min on 2 cores
  copilot finetune prepare --config qwen2.5-7b-instruct --records /data/records --no-public
  copilot finetune train --config qwen2.5-7b-instruct --resume
"""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="smollm2-135m",
                        help="config name in finetune/configs or a YAML path (default: smollm2-135m)")
    parser.add_argument("--run-name", help="name of the run (default: the config's name)")
    parser.add_argument("--work-dir", type=Path, help="work directory (default: COPILOT_HOME/finetune/<run-name>)")
    parser.add_argument("--base", help="base model: a prepared model name or a Hugging Face directory "
                                       "(default: the config's base_model)")


def _prepare_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--aci-bench", type=Path, help="ACI-Bench folder (train.json, valid.json); default: "
                                                       "aci-bench/ under $COPILOT_DATASETS (else ../shared/datasets "
                                                       "beside the repository) when present")
    parser.add_argument("--mts-dialog", type=Path, help="MTS-Dialog folder (train.csv, valid.csv); default: "
                                                        "mts-dialog/ under the same folder when present")
    parser.add_argument("--records", type=Path, action="append", default=[], metavar="PATH",
                        help="project JSON records: a .json/.jsonl file or a folder (repeatable)")
    parser.add_argument("--no-public", action="store_true",
                        help="do not pick up ACI-Bench / MTS-Dialog from the default folder")
    parser.add_argument("--no-kgqa", action="store_true", help="no knowledge-graph QA pairs")


def _train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-steps", type=int, help="optimizer steps (overrides the config)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--restart", action="store_true", help="discard earlier checkpoints and start over")
    parser.add_argument("--stop-after", type=int, metavar="STEP",
                        help="save a checkpoint and stop at this step (continue later with --resume)")


def _export_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="model name under COPILOT_HOME/models (default: ft-<run-name>)")
    parser.add_argument("--no-measure", action="store_true", help="skip the tokens/s and memory measurements")


def _eval_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, help="held-out encounters drafted by each model")
    parser.add_argument("--max-new-tokens", type=int, help="new tokens per draft")
    parser.add_argument("--perplexity-examples", type=int, help="validation examples for perplexity (0: skip)")
    parser.add_argument("--task", default="note", choices=["note", "section", "record_note"],
                        help="which held-out pairs to draft (default: note = ACI-Bench dialogue -> note)")


class FinetuneCommandError(RuntimeError):
    """A stage could not run; the message says what is missing or wrong (exit status 2)."""


def register(commands) -> None:
    """Add `finetune` with its actions to the `copilot` command (the `copilot.commands` entry point)."""
    command = commands.add_parser(
        "finetune", help="fine-tune a model on de-identified records (LoRA), export it, evaluate it",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fine-tune the copilot's model on your own records: de-identification gate, dataset "
                    "(drafting pairs + knowledge-graph QA with citations), LoRA training, merge and OpenVINO "
                    "export, evaluation against the base model. Everything runs locally.",
        epilog=EPILOG)
    actions = command.add_subparsers(dest="action", metavar="ACTION")
    specs = {
        "prepare": ("de-identify and build the dataset", [_prepare_args]),
        "train": ("LoRA training with checkpoints and a loss curve", [_train_args]),
        "export": ("merge the adapter and export to OpenVINO; measure runtime adapters", [_export_args]),
        "eval": ("base vs fine-tuned: perplexity, ROUGE-L, fact coverage", [_eval_args]),
        "run": ("prepare, train, export and eval in order", [_prepare_args, _train_args, _export_args, _eval_args]),
    }
    for name, (help_text, adders) in specs.items():
        action = actions.add_parser(name, help=help_text, description=help_text)
        _common(action)
        for add in adders:
            add(action)
        action.set_defaults(func=main_action)
    reviews = actions.add_parser(
        "reviews", help="the QC office's reviewed findings, de-identified, as JSON Lines",
        description="Export every reviewed QC finding (confirmed, or dismissed with its reason) from the instance "
                    "database: ids pseudonymised, people, departments and dates left out, free text through the "
                    "de-identification gate (examples with PHI left after scrubbing are refused).")
    reviews.add_argument("--out", type=Path, required=True, help="JSON Lines file to write")
    reviews.add_argument("--limit", type=int, default=100_000, help="at most this many reviews (default 100000)")
    reviews.set_defaults(func=reviews_action)
    command.set_defaults(user_errors=(FinetuneCommandError,))


def reviews_action(args) -> int:
    from finetune.reviews import export_reviews

    report = export_reviews(args.settings, args.out, limit=args.limit)
    _say(f"{report['written']} reviews written to {report['out']} ({report['confirmed']} confirmed, "
         f"{report['dismissed']} dismissed); {report['refused']} refused by the de-identification gate; "
         f"PHI replaced: {report['phi_replaced'] or 'none'}")
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def main_action(args) -> int:
    from finetune.chat_format import ChatTemplateError
    from finetune.config import ConfigError, load_config
    from finetune.dataset import DatasetError
    from finetune.evaluate import EvalError
    from finetune.export import ExportError
    from finetune.kgqa import KGQAError
    from finetune.paths import MissingInput, run_dir
    from finetune.sources import SourceError
    from finetune.train import TrainError

    action = args.action
    try:
        config = load_config(args.config)
        settings = args.settings
        run = run_dir(settings, args.run_name or config.name, args.work_dir)
        stages = ["prepare", "train", "export", "eval"] if action == "run" else [action]
        timings = {}
        for stage in stages:
            started = time.monotonic()
            _say(f"== {stage} ({run.root})")
            _stage(stage, args, config, settings, run, run_all=action == "run")
            timings[stage] = round(time.monotonic() - started, 1)
            _say(f"== {stage} done in {timings[stage] / 60:.1f} min")
        if action == "run":
            report = {"config": config.name, "work_dir": str(run.root), "stage_seconds": timings,
                      "total_seconds": round(sum(timings.values()), 1)}
            run.run_report.write_text(json.dumps(report, indent=2), encoding="utf-8")
            _say(f"pipeline finished in {report['total_seconds'] / 60:.1f} min: {timings}")
    except (ConfigError, MissingInput, DatasetError, SourceError, TrainError, ExportError, EvalError,
            ChatTemplateError, KGQAError) as exc:
        raise FinetuneCommandError(str(exc)) from None
    return 0


def _stage(stage: str, args, config, settings, run, run_all: bool) -> None:
    if stage == "prepare":
        from finetune.dataset import SourceOptions, prepare_dataset

        options = SourceOptions(aci_bench=args.aci_bench, mts_dialog=args.mts_dialog, records=list(args.records),
                                kgqa=not args.no_kgqa, public=not args.no_public)
        prepare_dataset(config, settings, run, options, base_model=args.base, progress=_say)
    elif stage == "train":
        from finetune.train import train

        train(config, settings, run, base_model=args.base, resume=args.resume,
              restart=args.restart or (run_all and not args.resume), max_steps=args.max_steps,
              stop_after=args.stop_after, progress=_say)
    elif stage == "export":
        from finetune.export import export

        export(config, settings, run, base_model=args.base, name=args.name, measure=not args.no_measure, progress=_say)
    elif stage == "eval":
        from finetune.evaluate import evaluate

        evaluate(config, settings, run, base_model=args.base, limit=args.limit, max_new_tokens=args.max_new_tokens,
                 perplexity_examples=args.perplexity_examples, task=args.task, progress=_say)

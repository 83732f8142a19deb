"""`copilot finetune train`: LoRA on the prepared dataset with peft + transformers, on CPU.

Validation loss is measured before the first step and at every eval step, so the curve
shows whether fine-tuning helped. Checkpoints (adapter, optimizer, scheduler, RNG) are
saved every ``save_steps``; ``--resume`` continues from the last one with the same schedule,
which is how a long 7B run survives a restart or is split over nights (``--stop-after``).
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from copilot.config import Settings
from finetune.config import TASKS, FinetuneConfig
from finetune.dataset import load_dataset_dir, load_tokenizer
from finetune.paths import MissingInput, RunDir, resolve_base
from finetune.split import bucket

Progress = Callable[[str], None]


class TrainError(RuntimeError):
    pass


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def select_validation(dataset, limit: int, salt: str) -> list[int]:
    """Up to ``limit`` validation rows, round-robin over tasks so a large task cannot crowd out the rest."""
    by_task: dict[str, list[int]] = {}
    for index, (example_id, task) in enumerate(zip(dataset["id"], dataset["task"])):
        by_task.setdefault(task, []).append(index)
    ids = dataset["id"]
    queues = [sorted(rows, key=lambda i: bucket(ids[i], salt + ":eval"))
              for task, rows in sorted(by_task.items(), key=lambda kv: TASKS.index(kv[0]) if kv[0] in TASKS else 99)]
    chosen = []
    while len(chosen) < limit and any(queues):
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    return sorted(chosen)


@dataclass
class PadCollator:
    pad_token_id: int

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        length = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), length), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            ids[i, :n] = torch.tensor(row["input_ids"], dtype=torch.long)
            labels[i, :n] = torch.tensor(row["labels"], dtype=torch.long)
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _callbacks(progress: Progress, stop_after: int | None, before: dict):
    from transformers import TrainerCallback

    class Lines(TrainerCallback):
        """One line per logged step and per evaluation: long CPU runs need a visible pulse."""

        def __init__(self):
            self.started = None
            self.first_step = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.monotonic()
            self.first_step = state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" in logs and self.started is not None:
                done = state.global_step - self.first_step
                per_step = (time.monotonic() - self.started) / max(done, 1)
                left = (state.max_steps - state.global_step) * per_step
                progress(f"step {state.global_step}/{state.max_steps}  loss {logs['loss']:.4f}  "
                         f"lr {logs.get('learning_rate', 0):.2e}  {per_step:.1f} s/step  ~{left / 60:.1f} min left")
            if "eval_loss" in logs:
                progress(f"eval at step {state.global_step}: validation loss {logs['eval_loss']:.4f} "
                         f"(perplexity {math.exp(min(logs['eval_loss'], 50)):.2f})")

    class KeepBaseline(TrainerCallback):
        """Trainer starts a fresh log when training begins; put the pre-training evaluation back at step 0."""

        def on_train_begin(self, args, state, control, **kwargs):
            if before and state.global_step == 0 and not any(h.get("step") == 0 and "eval_loss" in h
                                                             for h in state.log_history):
                state.log_history.insert(0, {**before, "step": 0, "epoch": 0.0})

    class StopAfter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if stop_after is not None and state.global_step >= stop_after:
                control.should_save = True
                control.should_training_stop = True
            return control

    return [Lines(), KeepBaseline(), StopAfter()]


def _lora_model(model, config: FinetuneConfig):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                      target_modules=list(config.lora.target_modules), bias="none", task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:
        import torch

        linear = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                         if isinstance(module, torch.nn.Linear)})
        raise TrainError(f"lora.target_modules {config.lora.target_modules} do not fit this model ({exc}); "
                         f"its linear layers are: {', '.join(linear)}") from None


def metrics_from_history(history: list[dict]) -> tuple[list[dict], list[dict]]:
    steps = [{"step": h["step"], "loss": h["loss"], "learning_rate": h.get("learning_rate"),
              "grad_norm": h.get("grad_norm"), "epoch": h.get("epoch")} for h in history if "loss" in h]
    evals = {}
    for h in history:
        if "eval_loss" in h:
            evals[h["step"]] = {"step": h["step"], "validation_loss": h["eval_loss"],
                                "perplexity": math.exp(min(h["eval_loss"], 50))}
    return steps, [evals[s] for s in sorted(evals)]


def plot_losses(steps: list[dict], evals: list[dict], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    if steps:
        axis.plot([s["step"] for s in steps], [s["loss"] for s in steps], label="train loss (per step)", alpha=0.8)
    if evals:
        axis.plot([e["step"] for e in evals], [e["validation_loss"] for e in evals], "o-", label="validation loss")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss (answer tokens)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


def train(config: FinetuneConfig, settings: Settings, run: RunDir, base_model: str | None = None,
          resume: bool = False, restart: bool = False, max_steps: int | None = None, stop_after: int | None = None,
          progress: Progress = print) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, PrinterCallback, Trainer, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    started = time.monotonic()
    t = config.train
    data, manifest = load_dataset_dir(run)
    base = resolve_base(settings, base_model or config.base_model, config.export.weight_format)
    checkpoint = base.require_checkpoint()
    if str(checkpoint) != manifest["base_model"]["checkpoint"]:
        raise MissingInput(f"the dataset was tokenised for {manifest['base_model']['checkpoint']}, not {checkpoint}; "
                           "run `copilot finetune prepare` again for this base model")
    last = get_last_checkpoint(str(run.checkpoints)) if run.checkpoints.is_dir() else None
    if resume and last is None:
        raise MissingInput(f"--resume: no checkpoint in {run.checkpoints} to resume from")
    if last and not resume:
        if not restart:
            raise TrainError(f"{run.checkpoints} holds checkpoints of an earlier run; pass --resume to continue it "
                             "or --restart to start over")
        shutil.rmtree(run.checkpoints)
        last = None
    if t.threads:
        torch.set_num_threads(t.threads)

    train_rows = list(range(len(data["train"])))
    eval_rows = select_validation(data["validation"], config.data.max_validation_examples, config.data.split_salt)
    if not train_rows:
        raise TrainError("the dataset has no training examples (check data.task_weights and the sources)")
    train_set = data["train"].select(train_rows).select_columns(["input_ids", "labels"])
    eval_set = data["validation"].select(eval_rows).select_columns(["input_ids", "labels"]) if eval_rows else None
    train_tasks, eval_tasks = data["train"]["task"], data["validation"]["task"]
    selected = {"train": dict(sorted(Counter(train_tasks[i] for i in train_rows).items())),
                "validation": dict(sorted(Counter(eval_tasks[i] for i in eval_rows).items()))}
    progress(f"training on {len(train_rows)} examples {selected['train']}, validating on {len(eval_rows)} "
             f"{selected['validation']}")

    tokenizer = load_tokenizer(checkpoint)
    dtype = torch.bfloat16 if t.dtype == "bfloat16" else torch.float32
    progress(f"loading {checkpoint} ({t.dtype})")
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=dtype)
    model.config.use_cache = False
    if t.gradient_checkpointing:
        model.enable_input_require_grads()
    model = _lora_model(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    progress(f"LoRA r={config.lora.r} alpha={config.lora.alpha} on {', '.join(config.lora.target_modules)}: "
             f"{trainable / 1e6:.2f}M trainable of {total / 1e6:.0f}M parameters")

    steps = max_steps if max_steps is not None else t.max_steps
    args = TrainingArguments(
        output_dir=str(run.checkpoints), max_steps=steps, num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=1,
        gradient_accumulation_steps=t.gradient_accumulation_steps, learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup_steps, weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm, logging_steps=t.logging_steps, logging_first_step=True,
        eval_strategy="steps" if eval_set is not None else "no", eval_steps=t.eval_steps,
        save_strategy="steps", save_steps=t.save_steps, save_total_limit=t.save_total_limit,
        gradient_checkpointing=t.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        bf16=t.dtype == "bfloat16", use_cpu=True, seed=t.seed, data_seed=t.seed, report_to=[],
        dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True,
    )
    before: dict = {}
    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                      data_collator=PadCollator(tokenizer.pad_token_id),
                      callbacks=_callbacks(progress, stop_after, before))
    trainer.remove_callback(PrinterCallback)
    if last is None and eval_set is not None:
        progress("measuring validation loss before training")
        before.update({k: v for k, v in trainer.evaluate().items() if k == "eval_loss"})
    progress(("resuming from " + last) if last else f"training for {args.max_steps if steps > 0 else 'all'} steps")
    output = trainer.train(resume_from_checkpoint=last)
    stopped_early = stop_after is not None and trainer.state.global_step < trainer.state.max_steps
    history = trainer.state.log_history
    if eval_set is not None and not stopped_early and not any(
            "eval_loss" in h and h["step"] == trainer.state.global_step for h in history):
        trainer.evaluate()
    run.adapter.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(str(run.adapter))
    tokenizer.save_pretrained(str(run.adapter))

    steps_log, evals = metrics_from_history(trainer.state.log_history)
    seconds = time.monotonic() - started
    metrics = {
        "config": config.name, "base_model": {"name": base.name, "checkpoint": str(checkpoint)},
        "lora": {"r": config.lora.r, "alpha": config.lora.alpha, "dropout": config.lora.dropout,
                 "target_modules": list(config.lora.target_modules), "trainable_parameters": trainable},
        "global_step": trainer.state.global_step, "max_steps": trainer.state.max_steps,
        "finished": not stopped_early, "resumed_from": last,
        "examples": {"train_selected": len(train_rows), "validation_used": len(eval_rows), "by_task": selected},
        "train_loss_per_step": steps_log, "validation": evals,
        "validation_loss_before": evals[0]["validation_loss"] if evals and evals[0]["step"] == 0 else None,
        "validation_loss_after": evals[-1]["validation_loss"] if evals else None,
        "train_runtime_s": round(output.metrics.get("train_runtime", 0.0), 1),
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "adapter": str(run.adapter),
    }
    run.metrics.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    plot_losses(steps_log, evals, run.loss_plot, f"LoRA {config.name}: loss per step")
    before, after = metrics["validation_loss_before"], metrics["validation_loss_after"]
    if before is not None and after is not None:
        progress(f"validation loss {before:.4f} -> {after:.4f}")
    progress(f"adapter saved to {run.adapter}; metrics {run.metrics}; curve {run.loss_plot}")
    return metrics

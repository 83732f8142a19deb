"""Where a fine-tuning run keeps its outputs, and where its base model comes from.

A run lives in one work directory (default ``COPILOT_HOME/finetune/<run-name>``) so it can be
resumed, inspected or deleted as a unit. The base model is the same transformers checkpoint
that ``copilot model prepare`` exported, so base and fine-tuned models share one export path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from copilot.config import DEFAULT_MODEL_NAME, Settings
from copilot.engine.prepare import MANIFEST


class MissingInput(RuntimeError):
    """Something a stage needs is not there yet; the message says which command makes it."""


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def manifest(self) -> Path:
        return self.dataset / "manifest.json"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def loss_plot(self) -> Path:
        return self.root / "loss.png"

    @property
    def export_report(self) -> Path:
        return self.root / "export.json"

    @property
    def eval_report(self) -> Path:
        return self.root / "eval.json"

    @property
    def run_report(self) -> Path:
        return self.root / "run.json"

    def require_dataset(self) -> None:
        if not self.manifest.is_file():
            raise MissingInput(f"no prepared dataset in {self.dataset}; run `copilot finetune prepare` "
                               f"with the same --work-dir / --run-name first")

    def require_adapter(self) -> None:
        if not (self.adapter / "adapter_config.json").is_file():
            raise MissingInput(f"no trained adapter in {self.adapter}; run `copilot finetune train` first")


def run_dir(settings: Settings, run_name: str, work_dir: Path | None = None) -> RunDir:
    return RunDir(Path(work_dir).expanduser().resolve() if work_dir else settings.finetune_dir / run_name)


@dataclass(frozen=True)
class BaseModel:
    name: str           # name under COPILOT_HOME/models
    checkpoint: Path    # transformers checkpoint to train from
    exported: Path      # the OpenVINO export of the base (for evaluation and runtime adapters)
    prepare_command: str

    def require_checkpoint(self) -> Path:
        if not (self.checkpoint / "config.json").is_file():
            raise MissingInput(f"base model checkpoint not found at {self.checkpoint}; prepare it with "
                               f"`{self.prepare_command}`")
        return self.checkpoint

    def require_exported(self) -> Path:
        if not (self.exported / "openvino_model.xml").is_file():
            raise MissingInput(f"base model {self.name!r} has no OpenVINO export at {self.exported}; "
                               f"run `{self.prepare_command}`")
        return self.exported


def resolve_base(settings: Settings, spec: str | Path | None, weight_format: str = "int8") -> BaseModel:
    """``spec`` is a prepared model name (default: the embedded one) or a Hugging Face model directory."""
    spec = str(spec) if spec else DEFAULT_MODEL_NAME
    looks_like_path = "/" in spec or spec.startswith(".") or Path(spec).expanduser().is_dir()
    if looks_like_path:
        path = Path(spec).expanduser().resolve()
        command = f"copilot model prepare --model {path} --weight-format {weight_format}"
        return BaseModel(path.name, path, settings.export_dir(path.name, weight_format), command)
    exported = settings.export_dir(spec, weight_format)
    checkpoint = settings.checkpoint_dir(spec)
    manifest = exported / MANIFEST
    if manifest.is_file():
        recorded = json.loads(manifest.read_text()).get("checkpoint")
        if recorded and Path(recorded).is_dir():
            checkpoint = Path(recorded)
    if spec == DEFAULT_MODEL_NAME:
        command = "copilot model prepare" + ("" if weight_format == "int8" else f" --weight-format {weight_format}")
    else:
        command = f"copilot model prepare --model /path/to/{spec} --weight-format {weight_format}"
    return BaseModel(spec, checkpoint, exported, command)

"""Fine-tuning run configuration: one YAML file per base model (finetune/configs/).

Unknown keys and wrong types are refused with the file and key named, so a typo in a
config cannot silently fall back to a default and waste hours of training.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).parent / "configs"
TASKS = ("note", "section", "record_note", "kg_qa")


class ConfigError(ValueError):
    """The configuration file cannot be used as written; the message names the file and key."""


@dataclass
class DataConfig:
    max_seq_length: int = 1024
    min_prompt_tokens: int = 256
    validation_fraction: float = 0.1
    split_salt: str = "copilot-finetune-split-v1"
    kgqa_variants: int = 2
    task_weights: dict[str, float] = field(default_factory=lambda: {t: 1.0 for t in TASKS})
    max_validation_examples: int = 64


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class TrainConfig:
    learning_rate: float = 2e-4
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 1
    gradient_accumulation_steps: int = 8
    warmup_steps: int = 0
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = True
    eval_steps: int = 10
    save_steps: int = 10
    save_total_limit: int = 2
    logging_steps: int = 1
    seed: int = 20261123
    dtype: str = "float32"
    threads: int | None = None


@dataclass
class EvalConfig:
    limit: int = 5
    max_new_tokens: int = 384
    max_prompt_tokens: int = 3072
    perplexity_examples: int = 48
    fact_kinds: list[str] = field(default_factory=lambda: ["drug", "dose", "diagnosis"])


@dataclass
class ExportConfig:
    weight_format: str = "int8"
    name: str | None = None
    bench_max_new_tokens: int = 128
    runtime_adapter: bool = True


@dataclass
class FinetuneConfig:
    name: str
    base_model: str | None = None
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    path: Path | None = None

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["path"] = str(self.path) if self.path else None
        return data


def _check_type(value, annotation, where: str):
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _check_type(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is list:
        (item,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {_check_type(k, key_type, where): _check_type(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:
            return float(value)  # YAML reads 2e-4 as a string
        except ValueError:
            pass
    bool_as_int = annotation is int and isinstance(value, bool)
    if annotation in (int, str, bool) and isinstance(value, annotation) and not bool_as_int:
        return value
    raise ConfigError(f"{where}: expected {getattr(annotation, '__name__', annotation)}, got {value!r}")


def _build(cls, raw: dict, where: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name != "path"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value or {}, f"{where}.{name}")
        else:
            values[name] = _check_type(value, hint, f"{where}.{name}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _validate(config: FinetuneConfig, where: str) -> None:
    d, t, lora = config.data, config.train, config.lora
    problems = []
    if d.max_seq_length < 64:
        problems.append("data.max_seq_length must be at least 64")
    if not 0 < d.min_prompt_tokens < d.max_seq_length:
        problems.append("data.min_prompt_tokens must be between 0 and data.max_seq_length")
    if not 0 <= d.validation_fraction < 1:
        problems.append("data.validation_fraction must be in [0, 1)")
    if d.kgqa_variants < 1:
        problems.append("data.kgqa_variants must be at least 1")
    bad_tasks = sorted(set(d.task_weights) - set(TASKS))
    if bad_tasks or any(not 0 <= w <= 1 for w in d.task_weights.values()):
        problems.append(f"data.task_weights: tasks must be among {', '.join(TASKS)}, each a share from 0 to 1")
    if lora.r < 1 or lora.alpha <= 0 or not 0 <= lora.dropout < 1 or not lora.target_modules:
        problems.append("lora: r >= 1, alpha > 0, 0 <= dropout < 1 and at least one target module")
    if t.learning_rate <= 0 or t.batch_size < 1 or t.gradient_accumulation_steps < 1:
        problems.append("train: learning_rate > 0, batch_size >= 1 and gradient_accumulation_steps >= 1")
    if t.max_steps == 0 or (t.max_steps < 0 and t.epochs <= 0):
        problems.append("train: set max_steps > 0, or max_steps: -1 with epochs > 0")
    if t.dtype not in ("float32", "bfloat16"):
        problems.append("train.dtype must be float32 or bfloat16")
    if min(t.eval_steps, t.save_steps, t.logging_steps) < 1:
        problems.append("train: eval_steps, save_steps and logging_steps must be >= 1")
    if config.export.weight_format not in ("int8", "int4", "fp16"):
        problems.append("export.weight_format must be int8, int4 or fp16")
    if config.eval.limit < 1 or config.eval.max_new_tokens < 1:
        problems.append("eval: limit and max_new_tokens must be >= 1")
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_config(name_or_path: str | Path) -> FinetuneConfig:
    """A config by name (finetune/configs/<name>.yaml) or by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml") and "/" not in str(name_or_path):
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"no fine-tuning config {str(name_or_path)!r} (looked for {path}); "
                          f"shipped configs: {', '.join(available_configs())}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or "name" not in raw:
        raise ConfigError(f"{path}: a config is a mapping with at least 'name'")
    config = _build(FinetuneConfig, raw, str(path))
    config.path = path.resolve()
    _validate(config, str(path))
    return config

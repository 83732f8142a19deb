"""Where local state lives and the few settings that shape a deployment.

Everything the copilot writes (models, indexes, databases, logs) goes under one
instance directory, ``COPILOT_HOME`` (default ``./instance``), so IT can back it up,
move it or wipe it as one unit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# Patient data must never leave the process: forbid every library from reaching a hub
# or sending telemetry, before any of them is imported.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
for _key, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_key, _value)

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"


def copilot_home() -> Path:
    return Path(os.environ.get("COPILOT_HOME", "instance")).expanduser().resolve()


@dataclass
class Settings:
    home: Path = field(default_factory=copilot_home)
    model_name: str = field(default_factory=lambda: os.environ.get("COPILOT_MODEL", DEFAULT_MODEL_NAME))
    weight_format: str = field(default_factory=lambda: os.environ.get("COPILOT_WEIGHT_FORMAT", "int8"))
    device: str = field(default_factory=lambda: os.environ.get("COPILOT_DEVICE", "CPU"))
    max_queue: int = field(default_factory=lambda: int(os.environ.get("COPILOT_MAX_QUEUE", "16")))

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    def model_dir(self, name: str | None = None, weight_format: str | None = None) -> Path:
        """The exported OpenVINO model that the server loads."""
        return self.models_dir / (name or self.model_name) / f"openvino-{weight_format or self.weight_format}"

    def checkpoint_dir(self, name: str | None = None) -> Path:
        """The transformers checkpoint the export starts from."""
        return self.models_dir / (name or self.model_name) / "hf"

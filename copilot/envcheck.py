"""Fail set-up loudly if the environment drifted from what the lock promises.

Run by ``make`` after installing: a CUDA torch, an importable-but-broken torchvision or
a telemetry package would each pass a plain ``pip install`` yet break the hospital
deployment (size, imports, or data leaving the machine).
"""

from __future__ import annotations

import importlib.util
import sys


def problems() -> list[str]:
    found = []
    import torch

    if not torch.__version__.startswith("2.13.0"):
        found.append(f"torch {torch.__version__} installed; 2.13.0 (CPU) is required")
    if torch.version.cuda is not None:
        found.append(f"a CUDA build of torch is installed (CUDA {torch.version.cuda}); use the CPU wheel")
    for name, why in [
        ("torchvision", "no CPU torchvision imports against torch 2.13.0+cpu; it breaks optimum-intel"),
        ("openvino_telemetry", "telemetry would try to send usage data off the machine"),
    ]:
        if importlib.util.find_spec(name) is not None:
            found.append(f"{name} is installed: {why}")
    try:
        from optimum.intel import OVModelForCausalLM  # noqa: F401
        import openvino_genai  # noqa: F401
    except Exception as exc:  # pragma: no cover - reported to the operator
        found.append(f"OpenVINO stack does not import: {exc}")
    return found


def main() -> int:
    found = problems()
    for line in found:
        print(f"envcheck: {line}", file=sys.stderr)
    if not found:
        print("envcheck: environment OK (torch 2.13.0 CPU, OpenVINO stack imports, no telemetry)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

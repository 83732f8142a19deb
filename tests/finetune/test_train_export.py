"""LoRA training on the tiny model (stopped, resumed), merge, OpenVINO export, generation, runtime adapter."""

from __future__ import annotations

import json

import pytest


def test_training_stops_resumes_and_lowers_validation_loss(trained_run):
    run, first, final = trained_run
    assert first["global_step"] == 3 and not first["finished"] and first["resumed_from"] is None
    assert final["global_step"] == 6 and final["finished"]
    assert final["resumed_from"].endswith("checkpoint-3")
    assert [s["step"] for s in final["train_loss_per_step"]] == [1, 2, 3, 4, 5, 6]
    assert final["train_loss_per_step"][:3] == first["train_loss_per_step"]  # history carried over by the checkpoint
    assert [e["step"] for e in final["validation"]] == [0, 3, 6]
    assert final["validation_loss_after"] < final["validation_loss_before"]
    assert json.loads(run.metrics.read_text()) == final
    assert run.loss_plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run.adapter / "adapter_model.safetensors").is_file()
    config = json.loads((run.adapter / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8


def test_training_does_not_silently_overwrite_checkpoints(trained_run, tiny_config, finetune_settings, tiny_checkpoint):
    from finetune.train import TrainError, train

    run, _, _ = trained_run
    with pytest.raises(TrainError, match="--resume"):
        train(tiny_config, finetune_settings, run, base_model=str(tiny_checkpoint), progress=lambda _: None)


def test_merged_weights_are_base_plus_scaled_lora(exported_run, tiny_checkpoint):
    from safetensors.torch import load_file

    run, report = exported_run
    merged = load_file(str(run.merged / "model.safetensors"))
    base = load_file(str(tiny_checkpoint / "model.safetensors"))
    lora = load_file(str(run.adapter / "adapter_model.safetensors"))
    name = "model.layers.0.self_attn.q_proj"
    a, b = lora[f"base_model.model.{name}.lora_A.weight"], lora[f"base_model.model.{name}.lora_B.weight"]
    expected = base[f"{name}.weight"] + (8 / 4) * b @ a
    assert (merged[f"{name}.weight"] - expected).abs().max() < 1e-5
    assert (b.abs().max() > 0)  # training moved B away from its zero initialisation
    runtime = load_file(report["runtime_adapter"]["file"])
    assert (runtime[f"base_model.model.{name}.lora_B.weight"] - 2.0 * b).abs().max() < 1e-6


def test_export_goes_through_prepare_and_generates(exported_run, finetune_settings):
    from copilot.engine.pipeline import Engine, GenerationRequest

    run, report = exported_run
    exported = finetune_settings.export_dir("ft-tiny-run", "int8")
    assert report["exported"] == str(exported)
    manifest = json.loads((exported / "copilot-model.json").read_text())
    assert manifest["checkpoint"] == str(run.merged) and manifest["weight_format"] == "int8"
    engine = Engine(exported, max_queue=1)
    try:
        result = engine.generate(GenerationRequest(messages=[{"role": "user", "content": "Blood pressure?"}],
                                                   max_new_tokens=8))
    finally:
        engine.close()
    assert result.metrics.generated_tokens > 0 and result.finish_reason in ("stop", "length")
    assert json.loads(run.export_report.read_text()) == report


def test_merged_and_runtime_adapter_are_measured(exported_run):
    _, report = exported_run
    measured = report["measurements"]
    for label in ("merged", "base", "runtime_adapter", "runtime_adapter_alpha_1"):
        entry = measured[label]
        assert "error" not in entry, entry
        assert entry["generated_tokens"] == 8 and entry["decode_tokens_per_s"] > 0 and entry["peak_rss_mb"] > 50
    assert measured["runtime_adapter"]["adapter"] == report["runtime_adapter"]["file"]
    assert measured["runtime_adapter"]["alpha"] == report["runtime_adapter"]["alpha"] == 0.5
    assert 0 <= measured["runtime_adapter"]["agreement_with_merged"]["position_matches"] <= 8

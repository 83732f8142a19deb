import json
import shutil
from pathlib import Path

import pytest

from copilot.config import Settings
from copilot.engine.prepare import MANIFEST, PrepareError, check_checkpoint, prepare, quantization_args


def test_export_writes_ir_tokenizers_and_manifest(tiny_model, tiny_checkpoint):
    for name in ("openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        assert (tiny_model / name).is_file(), name
    manifest = json.loads((tiny_model / MANIFEST).read_text())
    assert manifest["weight_format"] == "int8"
    assert manifest["architecture"] == "llama"
    assert manifest["checkpoint"] == str(tiny_checkpoint)
    assert manifest["weights_bytes"] == (tiny_model / "openvino_model.bin").stat().st_size > 0


def test_prepare_is_idempotent(tiny_model, tiny_checkpoint, tiny_settings):
    before = (tiny_model / "openvino_model.bin").stat().st_mtime_ns
    again = prepare(tiny_settings, model=tiny_checkpoint, weight_format="int8", progress=lambda _: None)
    assert again.reused and again.path == tiny_model
    assert (tiny_model / "openvino_model.bin").stat().st_mtime_ns == before


@pytest.mark.export
def test_changed_source_is_exported_again(tiny_checkpoint, tmp_path):
    source = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, source)
    settings = Settings(home=tmp_path / "home")
    first = prepare(settings, model=source, weight_format="fp16", progress=lambda _: None)
    assert not first.reused
    config = json.loads((source / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5 if config.get("rms_norm_eps") != 1e-5 else 1e-6
    (source / "config.json").write_text(json.dumps(config))
    second = prepare(settings, model=source, weight_format="fp16", progress=lambda _: None)
    assert not second.reused
    assert list(second.path.parent.glob("*.tmp-*")) == []  # no half-built folders left behind


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(PrepareError, match="does not exist"):
        prepare(Settings(home=tmp_path), model=tmp_path / "nope")


def test_directory_without_config(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(PrepareError, match="no config.json"):
        check_checkpoint(tmp_path / "m")


def test_malformed_config(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(PrepareError, match="not valid JSON"):
        check_checkpoint(tmp_path)


def test_unsupported_architecture(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(PrepareError, match="unsupported architecture 'bert'"):
        check_checkpoint(tmp_path)


def test_remote_code_needs_consent(tiny_checkpoint, tmp_path):
    source = tmp_path / "m"
    shutil.copytree(tiny_checkpoint, source)
    config = json.loads((source / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}
    (source / "config.json").write_text(json.dumps(config))
    with pytest.raises(PrepareError, match="--trust-remote-code"):
        check_checkpoint(source)


def test_no_weights(tiny_checkpoint, tmp_path):
    source = tmp_path / "m"
    shutil.copytree(tiny_checkpoint, source)
    for weights in source.glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(PrepareError, match="no weight files"):
        check_checkpoint(source)


def test_not_enough_disk(tiny_checkpoint, tmp_path, monkeypatch):
    import copilot.engine.prepare as prepare_module

    monkeypatch.setattr(prepare_module.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10, 10, 1024))
    with pytest.raises(PrepareError, match="not enough disk"):
        prepare(Settings(home=tmp_path), model=tiny_checkpoint, weight_format="int8", progress=lambda _: None)
    assert not (tmp_path / "models" / tiny_checkpoint.name / "openvino-int8").exists()


def test_weight_formats():
    assert quantization_args("int8", 576) == ["--weight-format", "int8"]
    int4 = quantization_args("int4", 576)
    assert int4[int4.index("--group-size") + 1] == "64"  # 576 is not a multiple of 128
    assert quantization_args("int4", 4096)[3] == "128"
    with pytest.raises(PrepareError, match="unknown weight format"):
        quantization_args("int3", 576)


def test_embedded_default_is_found_and_exported(embedded_model):
    manifest = json.loads((embedded_model / MANIFEST).read_text())
    assert manifest["name"] == "smollm2-135m-instruct"
    assert manifest["source"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert manifest["hidden_size"] == 576 and manifest["num_hidden_layers"] == 30
    # INT8 weights: about one byte per parameter (134.5M parameters, tied embeddings).
    assert 120e6 < manifest["weights_bytes"] < 160e6
    assert (Path(manifest["checkpoint"]) / "tokenizer.json").is_file()

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_benchmark_writes_the_documented_shape(tiny_model, tmp_path):
    out = tmp_path / "r.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "tokens_per_second.py"), "--model", str(tiny_model),
         "--input-lengths", "16", "64", "--new-tokens", "6", "--repeats", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results["machine"]) == {"cpu", "cores", "memory_bandwidth_gbs"}
    assert results["machine"]["memory_bandwidth_gbs"] > 0.5
    backends = {run["backend"] for run in results["runs"]}
    assert {"pytorch-fp32", "openvino-int8"} <= backends
    for run in results["runs"]:
        assert run["input_tokens"] in (16, 64) and run["new_tokens"] == 6
        for key in ("ttft_s", "decode_tokens_per_s", "note_300_words_s", "peak_rss_mb", "roofline_fraction"):
            assert isinstance(run[key], float) and run[key] > 0, key
        assert isinstance(run["weights_bytes"], int) and run["weights_bytes"] > 0
    assert out.with_suffix(".md").read_text().count("| tiny-llama |") == 4
    assert out.with_suffix(".png").stat().st_size > 1000


def test_bandwidth_probe_reads_at_least_a_gigabyte():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from membw import read_bandwidth_gbs

    assert read_bandwidth_gbs(buffer_bytes=1 << 30, passes=1) > 0.5

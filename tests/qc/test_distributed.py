"""Batch QC on a real local Ray (``ray_cluster``: ray.init(num_cpus=2), marked `ray`): the same bytes as the
local runner, in input order; resume after a killed driver; a killed Ray worker loses and repeats nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from copilot.cli import main
from copilot.qc.batch import run_batch
from tests.qc.test_batch import write_batch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Synthetic records with broken lines and a repeated id, plus the labelled dev set (wrapped lines)."""
    folder = tmp_path_factory.mktemp("ray-inputs")
    write_batch(folder / "a.jsonl", 150, bad_every=25)
    with (folder / "a.jsonl").open("a") as handle:  # a repeated id: reported as a duplicate, by position
        handle.write((folder / "a.jsonl").read_text().splitlines()[0] + "\n")
    devset = (REPO / "benchmarks" / "data" / "qc_devset.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    (folder / "b.jsonl").write_text("\n".join(devset) + "\n", encoding="utf-8")
    return [folder / "a.jsonl", folder / "b.jsonl"]


@pytest.fixture(scope="module")
def local_output(inputs, shipped_home, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out.jsonl"
    run_batch(inputs, out, shipped_home, show_progress=False)
    return out.read_bytes()


def canonical(data: bytes) -> list[str]:
    return [json.dumps(json.loads(line), sort_keys=True, ensure_ascii=False) for line in data.splitlines()]


def test_ray_output_is_the_local_output_in_input_order(ray_cluster, inputs, local_output, shipped_home, tmp_path):
    out = tmp_path / "ray.jsonl"
    summary = run_batch(inputs, out, shipped_home, show_progress=False, ray_address="auto")
    assert summary.records == 191 and summary.duplicates == 1 and summary.errors == 7
    assert canonical(out.read_bytes()) == canonical(local_output)
    assert out.read_bytes() == local_output  # the same bytes, not only the same set of lines
    assert any(json.loads(line)["findings"] for line in local_output.splitlines())


def test_resume_on_ray_after_a_killed_run_loses_and_repeats_nothing(ray_cluster, inputs, local_output, shipped_home,
                                                                   tmp_path):
    out = tmp_path / "ray.jsonl"
    lines = local_output.splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:57]) + lines[57][:30])  # killed after 57 lines, the 58th torn
    summary = run_batch(inputs, out, shipped_home, show_progress=False, resume=True, ray_address="auto")
    assert summary.skipped == 57 and summary.records == len(lines) - 57
    assert out.read_bytes() == local_output


def test_a_killed_ray_worker_is_replaced_and_its_chunk_checked_again(ray_cluster, inputs, local_output,
                                                                     shipped_home):
    from copilot.qc.distributed import RayPool
    from copilot.records.loaders import iter_records

    from copilot.qc.batch import check_record

    pool = RayPool("auto", shipped_home, "CN", actors=2, chunk=4, check=check_record)  # 10 chunks, up to 6 in flight

    def pid(actor):
        return ray_cluster.get(actor.__ray_call__.remote(lambda self: os.getpid()))

    try:
        before = pid(pool.actors[0])
        results = []
        for index, (loaded, result) in enumerate(pool.map(iter_records([inputs[1]], None, None))):
            if index == 1:  # chunks are queued on both actors: one worker process dies
                ray_cluster.kill(pool.actors[0], no_restart=False)
            results.append((loaded.position, result))
        assert pid(pool.actors[0]) != before  # Ray replaced the worker
    finally:
        pool.close()
    expected = [json.loads(line) for line in local_output.splitlines()][-40:]
    assert [position for position, _ in results] == [f"{inputs[1]}:{n}" for n in range(1, 41)]
    assert [r for _, r in results] == expected


def test_the_cli_checks_on_ray(ray_cluster, inputs, local_output, shipped_home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COPILOT_HOME", str(shipped_home))
    out = tmp_path / "cli.jsonl"
    code = main(["qc", *map(str, inputs), "--out", str(out), "--quiet", "--ray", "--html", str(tmp_path / "r.html")])
    assert code == 1  # the broken lines are records that could not be checked, as in a local run
    assert "184 records checked, 7 not checked" in capsys.readouterr().err
    assert out.read_bytes() == local_output and (tmp_path / "r.html").is_file()


def test_a_qc_job_runs_on_ray(ray_cluster, inputs, local_output, shipped_home, tmp_path):
    """COPILOT_RAY_ADDRESS: jobs uploaded through the API are checked on the cluster, with the same results,
    written by the server process as a local job's are."""
    import io

    from copilot.qc.jobs import INPUT, RESULTS, JobRunner, JobStore
    from tests.helpers import wait_for

    store = JobStore(tmp_path / "jobs")
    job = store.create("qc", io.BytesIO(inputs[1].read_bytes()), max_bytes=1 << 24)
    runner = JobRunner(store, shipped_home, interval=0.05, ray_address="auto")
    runner.start()
    try:
        done = wait_for(lambda: store.get(job.id).status in ("done", "failed") and store.get(job.id), timeout=120)
    finally:
        runner.stop()
    assert done.status == "done" and done.done == 40, done
    expected = [json.loads(line) for line in local_output.splitlines()][-40:]
    for row in expected:
        row["source"] = INPUT
    assert [json.loads(line) for line in store.path(job.id, RESULTS).read_text().splitlines()] == expected

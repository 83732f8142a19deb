"""QC jobs: uploads become job folders, one runner works through them, and a stopped or killed
process leaves nothing lost and nothing twice."""

from __future__ import annotations

import hashlib
import io
import json

import pytest

from copilot.qc.batch import run_batch
from copilot.qc.jobs import INPUT, RESULTS, STATE, JobError, JobRunner, JobStore, JobTooLarge
from tests.helpers import NOTE, make_record, wait_for

DEFECT = NOTE.replace("lisinopril 20 mg daily", "lisinopril 20 mg QD")


def jsonl(count: int, bad_every: int = 0) -> bytes:
    lines = []
    for index in range(count):
        if bad_every and index % bad_every == bad_every - 1:
            lines.append('{"id": "broken-%d", "documents": 5}' % index)
        else:
            lines.append(json.dumps(make_record(DEFECT if index % 2 else NOTE, id=f"r{index:05d}")))
    return ("\n".join(lines) + "\n").encode()


def result_ids(store: JobStore, job_id: str) -> list[str]:
    return [json.loads(line)["record_id"] for line in store.path(job_id, RESULTS).read_text().splitlines()]


@pytest.fixture
def store(tmp_path) -> JobStore:
    return JobStore(tmp_path / "jobs")


@pytest.fixture
def runners(store, shipped_home, paced_records):
    started = []

    def make(**kwargs) -> JobRunner:
        runner = JobRunner(store, shipped_home, **kwargs)
        started.append(runner)
        return runner

    yield make
    for runner in started:
        runner.stop()


def test_upload_is_counted_hashed_and_written_atomically(store):
    data = b"\n" + jsonl(3) + b"   \n" + json.dumps(make_record(id="last")).encode()  # no final newline
    job = store.create("qc", io.BytesIO(data), max_bytes=1 << 20)
    assert job.total == 4 and job.status == "queued" and job.owner == "qc" and job.input_bytes == len(data)
    assert store.path(job.id, INPUT).read_bytes() == data
    assert json.loads(store.path(job.id, STATE).read_text())["total"] == 4
    assert [j.id for j in store.list()] == [job.id] and store.list(owner="someone-else") == []
    assert not [p for p in store.root.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("data, error, message", [
    (b"", JobError, "no records"),
    (b"\n  \n\n", JobError, "no records"),
    (b"%PDF-1.7 binary\n", JobError, "line 1 is not JSON"),
    (b"\n[1, 2]\n", JobError, "line 2 is a JSON list"),
    (b"\xff\xfe{}\n", JobError, "not UTF-8"),
])
def test_unusable_uploads_are_refused_and_leave_nothing(store, data, error, message):
    with pytest.raises(error, match=message):
        store.create("qc", io.BytesIO(data), max_bytes=1 << 20)
    assert list(store.root.iterdir()) == []


def test_oversized_upload_is_refused_while_streaming(store):
    with pytest.raises(JobTooLarge, match="larger than"):
        store.create("qc", io.BytesIO(jsonl(400)), max_bytes=64 * 1024)
    assert list(store.root.iterdir()) == []


@pytest.mark.parametrize("job_id", ["../..", "..", "%2e%2e", "../jobs/x", "A" * 32, "0" * 31, "0" * 33, "",
                                    "0" * 31 + "/"])
def test_ids_outside_the_strict_pattern_name_no_job(store, job_id):
    store.create("qc", io.BytesIO(jsonl(1)), max_bytes=1 << 20)
    assert store.get(job_id) is None
    with pytest.raises(KeyError):
        store.folder(job_id)


def test_runner_finishes_jobs_in_order_with_progress_and_summary(store, runners):
    first = store.create("qc", io.BytesIO(jsonl(12, bad_every=4)), max_bytes=1 << 20)
    second = store.create("qc", io.BytesIO(jsonl(3)), max_bytes=1 << 20)
    runner = runners(interval=0.05)
    assert runner.start() == [first.id, second.id]  # queued jobs found on disk are picked up
    done = wait_for(lambda: store.get(second.id).status == "done" and store.get(second.id))
    job = store.get(first.id)
    assert job.status == "done" and job.finished <= done.finished
    assert (job.total, job.done, job.errors, job.percent, job.eta_s) == (12, 12, 3, 100.0, None)
    assert sorted(result_ids(store, first.id)) == sorted([f"r{i:05d}" for i in range(12) if i % 4 != 3]
                                                         + [f"broken-{i}" for i in range(12) if i % 4 == 3])
    assert job.summary == {"records": 12, "findings": 3, "by_severity": {"major": 3},
                           "by_category": {"documentation": 3}}
    assert job.sources and all(s.startswith("abbr.") for s in job.sources)
    assert job.results_sha256 == hashlib.sha256(store.path(first.id, RESULTS).read_bytes()).hexdigest()


def test_a_stopped_runner_leaves_the_job_queued_and_the_next_one_completes_it(store, runners):
    job = store.create("qc", io.BytesIO(jsonl(600)), max_bytes=1 << 24)
    runner = runners(interval=0.05)
    runner.start()
    wait_for(lambda: store.get(job.id).done >= 20)
    runner.stop()
    stopped = store.get(job.id)
    assert stopped.status == "queued" and 20 <= stopped.done < 600
    assert len(result_ids(store, job.id)) == stopped.done

    again = runners(interval=0.05)
    assert again.start() == [job.id]
    finished = wait_for(lambda: store.get(job.id).status == "done" and store.get(job.id))
    ids = result_ids(store, job.id)
    assert finished.done == 600 and len(ids) == 600 and len(set(ids)) == 600


def test_a_crash_mid_write_is_resumed_without_loss_or_duplicates(store, runners, shipped_home, tmp_path):
    """Simulate a killed server: results for the first 7 records, a torn 8th line, job.json still running."""
    data = jsonl(20)
    job = store.create("qc", io.BytesIO(data), max_bytes=1 << 20)
    head = tmp_path / "head.jsonl"
    head.write_bytes(b"\n".join(data.splitlines()[:7]) + b"\n")
    run_batch([head], store.path(job.id, RESULTS), shipped_home, show_progress=False, relative_to=tmp_path)
    results = store.path(job.id, RESULTS)
    results.write_text(results.read_text().replace('"head.jsonl"', f'"{INPUT}"'))  # as the job's own run writes
    with store.path(job.id, RESULTS).open("a") as handle:
        handle.write('{"record_id": "r00007", "status": "ok", "findi')
    store.update(job.id, status="running", started="2026-01-01T00:00:00+00:00", done=7)

    runners().start()
    finished = wait_for(lambda: store.get(job.id).status == "done" and store.get(job.id))
    ids = result_ids(store, job.id)
    assert sorted(ids) == [f"r{i:05d}" for i in range(20)] and finished.done == 20
    assert finished.started == "2026-01-01T00:00:00+00:00"


def test_cancel_a_queued_job_at_once_and_a_running_one_at_its_next_record(store, runners):
    running = store.create("qc", io.BytesIO(jsonl(3000)), max_bytes=1 << 24)
    queued = store.create("qc", io.BytesIO(jsonl(2)), max_bytes=1 << 20)
    runner = runners(interval=0.05)
    assert runner.cancel(queued.id).status == "cancelled"
    runner.start()
    wait_for(lambda: store.get(running.id).done >= 5)
    assert runner.cancel(running.id).cancel_requested
    cancelled = wait_for(lambda: store.get(running.id).status == "cancelled" and store.get(running.id))
    assert cancelled.done < 3000 and cancelled.finished
    assert len(result_ids(store, running.id)) == cancelled.done
    assert store.get(queued.id).status == "cancelled" and not store.path(queued.id, RESULTS).exists()
    assert runner.cancel(queued.id).status == "cancelled"  # idempotent


def test_two_runners_on_one_instance_never_run_the_same_job(store, runners, caplog):
    job = store.create("qc", io.BytesIO(jsonl(600)), max_bytes=1 << 24)
    first, second = runners(interval=0.05), runners(interval=0.05)
    first.start()
    wait_for(lambda: store.get(job.id).done > 0)
    with caplog.at_level("WARNING", logger="copilot.qc.jobs"):
        assert second.start() == [job.id]  # it sees the running job but cannot take its lock
        wait_for(lambda: "being run by another runner" in caplog.text, timeout=10)
    assert store.get(job.id).status == "running"
    wait_for(lambda: store.get(job.id).status == "done", timeout=120)
    ids = result_ids(store, job.id)
    assert len(ids) == len(set(ids)) == 600


def test_a_deep_or_broken_line_is_one_error_row_and_the_job_completes(store, runners):
    lines = [json.dumps(make_record(id="r0")), "[" * 5000 + "]" * 5000, '{"id": "x", "documents": NaN}',
             json.dumps(make_record(id="r3"))]
    job = store.create("qc", io.BytesIO(("\n".join(lines) + "\n").encode()), max_bytes=1 << 20)
    runners(interval=0.05).start()
    finished = wait_for(lambda: store.get(job.id).status in ("done", "failed") and store.get(job.id))
    assert (finished.status, finished.done, finished.errors) == ("done", 4, 2)
    rows = {json.loads(line)["line"]: json.loads(line) for line in store.path(job.id, RESULTS).read_text().splitlines()}
    assert rows[2]["error"].startswith("input.jsonl:2: JSON nested too deeply")
    assert str(store.root) not in store.path(job.id, RESULTS).read_text()  # no server path for the owner


def test_a_repeated_id_across_a_restart_is_reported_and_the_job_covers_every_line(store, runners):
    """The issue's 3,239 of 3,240: an id repeated after the restart point was skipped as done."""
    ids = [f"r{i:05d}" for i in range(600)]
    ids[500] = ids[3]
    data = "".join(json.dumps(make_record(NOTE, id=i)) + "\n" for i in ids).encode()
    job = store.create("qc", io.BytesIO(data), max_bytes=1 << 24)
    runner = runners(interval=0.05)
    runner.start()
    wait_for(lambda: store.get(job.id).done >= 20)
    runner.stop()
    assert store.get(job.id).done < 500
    runners(interval=0.05).start()
    finished = wait_for(lambda: store.get(job.id).status == "done" and store.get(job.id))
    rows = [json.loads(line) for line in store.path(job.id, RESULTS).read_text().splitlines()]
    assert finished.done == finished.total == 600 and sorted(r["line"] for r in rows) == list(range(1, 601))
    repeated = next(r for r in rows if r["line"] == 501)
    assert repeated["status"] == "error" and "duplicate record id 'r00003' (first at input.jsonl:4)" in repeated["error"]
    assert finished.errors == 1


def test_a_job_is_done_only_when_every_line_is_answered_once(store, runners):
    data = jsonl(5)
    job = store.create("qc", io.BytesIO(data), max_bytes=1 << 20)
    runner = runners(interval=0.05)
    runner.start()
    wait_for(lambda: store.get(job.id).status == "done")
    runner.stop()
    results = store.path(job.id, RESULTS)
    first = results.read_text().splitlines()[0]
    results.write_text(results.read_text() + first + "\n")  # one line answered twice
    store.update(job.id, status="queued")
    runners(interval=0.05).start()
    failed = wait_for(lambda: store.get(job.id).status == "failed" and store.get(job.id))
    assert "answered twice input.jsonl:1" in failed.error and str(store.root) not in failed.error


@pytest.mark.parametrize("damage", [b"", b"{\"id\": ", b"\x00\x01garbage", b"[1, 2]"])
def test_a_damaged_job_state_is_rebuilt_and_the_job_resumes(store, runners, damage):
    job = store.create("qc", io.BytesIO(jsonl(30)), max_bytes=1 << 20)
    store.update(job.id, status="running", done=12)
    store.path(job.id, STATE).write_bytes(damage)
    assert [j.id for j in store.list()] == [job.id]  # the list does not fail on it
    rebuilt = store.get(job.id)
    assert (rebuilt.owner, rebuilt.status, rebuilt.total) == ("qc", "queued", 30)
    assert runners(interval=0.05).start() == [job.id]
    finished = wait_for(lambda: store.get(job.id).status == "done" and store.get(job.id))
    assert finished.done == 30 and len(result_ids(store, job.id)) == 30


def test_a_job_whose_state_cannot_be_rebuilt_is_failed_not_fatal(store):
    job = store.create("qc", io.BytesIO(jsonl(3)), max_bytes=1 << 20)
    store.path(job.id, STATE).write_bytes(b"{")
    store.path(job.id, "upload.json").unlink()
    damaged = store.get(job.id)
    assert damaged.status == "failed" and "damaged" in damaged.error and damaged.owner == ""
    assert store.unfinished() == []


def test_a_full_disk_pauses_the_job_until_there_is_space(store, runners, monkeypatch):
    import errno

    from copilot.qc import jobs

    real, calls = jobs.run_batch, []

    def full_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(jobs, "run_batch", full_once)
    monkeypatch.setattr(jobs, "DISK_RETRY_S", 0.3)
    job = store.create("qc", io.BytesIO(jsonl(4)), max_bytes=1 << 20)
    runners(interval=0.05).start()
    paused = wait_for(lambda: store.get(job.id).error and store.get(job.id))
    assert paused.status in ("queued", "running") and "disk is full" in paused.error
    finished = wait_for(lambda: store.get(job.id).status == "done" and store.get(job.id))
    assert finished.done == 4 and finished.error is None and len(calls) == 2

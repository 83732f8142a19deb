"""QC job state in the instance database (SQLite, and PostgreSQL marked `postgres`): two servers sharing the
job folders and the database run each job once, resume each other's, and see each other's cancels."""

from __future__ import annotations

import io
import json

import pytest

from copilot.qc.jobs import RESULTS, STATE, JobRunner
from copilot.qc.shared_jobs import SharedJobStore
from tests.helpers import wait_for
from tests.qc.test_jobs import jsonl, result_ids


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def servers(request, tmp_path, shipped_home, paced_records):
    """Two servers' stores and runners on one jobs folder and one database."""
    url = (f"sqlite:///{tmp_path / 'copilot.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_server")())
    stores = [SharedJobStore(tmp_path / "jobs", url) for _ in range(2)]
    runners = []

    def runner(index: int) -> JobRunner:
        made = JobRunner(stores[index], shipped_home, interval=0.05)
        runners.append(made)
        return made

    yield stores, runner
    for made in runners:
        made.stop()


def test_a_job_runs_once_and_every_server_sees_its_state(servers):
    (one, two), runner = servers
    job = one.create("qc", io.BytesIO(jsonl(12, bad_every=4)), max_bytes=1 << 20)
    assert not one.path(job.id, STATE).exists()  # the state is a database row, not job.json
    assert [j.id for j in two.list()] == [job.id] and two.get(job.id).status == "queued"
    first, second = runner(0), runner(1)
    assert first.start() == [job.id] and second.start() == [job.id]  # both servers find it unfinished
    done = wait_for(lambda: two.get(job.id).status == "done" and two.get(job.id))
    assert (done.total, done.done, done.errors) == (12, 12, 3) and done.summary["findings"] == 3
    ids = result_ids(one, job.id)
    assert len(ids) == 12 and len(set(ids)) == 12  # run once, by one of them


def test_a_server_that_stops_leaves_the_job_for_another_to_finish(servers):
    (one, two), runner = servers
    job = one.create("qc", io.BytesIO(jsonl(600)), max_bytes=1 << 24)
    first = runner(0)
    first.start()
    wait_for(lambda: two.get(job.id).done >= 20)
    first.stop()
    stopped = two.get(job.id)
    assert stopped.status == "queued" and 20 <= stopped.done < 600
    assert runner(1).start() == [job.id]
    finished = wait_for(lambda: one.get(job.id).status == "done" and one.get(job.id))
    ids = result_ids(two, job.id)
    assert finished.done == 600 and len(ids) == 600 and len(set(ids)) == 600


def test_a_cancel_through_another_server_stops_the_running_job(servers):
    (one, two), runner = servers
    job = one.create("qc", io.BytesIO(jsonl(3000)), max_bytes=1 << 24)
    runner(0).start()
    wait_for(lambda: two.get(job.id).done >= 5)
    assert runner(1).cancel(job.id).cancel_requested  # the second server does not run it
    cancelled = wait_for(lambda: one.get(job.id).status == "cancelled" and one.get(job.id))
    assert cancelled.done < 3000 and len(result_ids(one, job.id)) == cancelled.done
    assert json.loads(one.path(job.id, RESULTS).read_text().splitlines()[0])["status"] == "ok"

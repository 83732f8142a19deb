"""QC batch jobs whose state lives in the instance database (COPILOT_DATABASE_URL), for several servers.

The files of a job (input.jsonl, upload.json, results.jsonl, report.html) stay in its folder under
HOME/qc/jobs, which servers that share jobs must share (a network volume); what moves to the
``qc_batch_jobs`` table is the state that job.json holds for a single server: status, progress,
cancel requests. Every read-modify-write is one transaction that locks the job's row
(SELECT ... FOR UPDATE), and a job is run only by the server holding its advisory lock
(``pg_try_advisory_lock``, released with the connection if that server dies), so servers that
each re-queue the unfinished jobs at start never run one job twice. On SQLite the row lock is
SQLite's database lock and the run lock the job folder's flock, as for the file store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Column, Index, MetaData, String, Table, Text, insert, select, update

from copilot.qc.jobs import Job, JobStore

metadata = MetaData()

jobs = Table(
    "qc_batch_jobs", metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("created", String(40), nullable=False),
    Column("status", String(12), nullable=False),
    Column("state", Text, nullable=False),  # the Job as JSON, what job.json holds for the file store
    Index("ix_qc_batch_jobs_status", "status"),
)


class SharedJobStore(JobStore):
    """JobStore with its state in the database at ``url``; the same interface and job folders."""

    STATE_IN_FOLDER = False

    def __init__(self, root: Path, url: str):
        from copilot.db import open_database

        super().__init__(root)
        self.engine = open_database(url)
        self._postgres = self.engine.dialect.name == "postgresql"
        self._local = threading.local()  # the connection of the transaction this thread is in

    def _load(self, job_id: str) -> Job:
        connection = getattr(self._local, "connection", None)
        query = select(jobs.c.state).where(jobs.c.id == job_id)
        if connection is not None:
            row = connection.execute(query).first()
        else:
            with self.engine.connect() as fresh:
                row = fresh.execute(query).first()
        if row is None:
            raise FileNotFoundError(job_id)
        return Job.from_json(json.loads(row[0]))

    def _save(self, job: Job) -> None:
        values = {"owner": job.owner, "created": job.created, "status": job.status,
                  "state": json.dumps(job.to_json(), ensure_ascii=False)}
        connection = getattr(self._local, "connection", None)
        with contextlib.nullcontext(connection) if connection is not None else self.engine.begin() as conn:
            if conn.execute(update(jobs).where(jobs.c.id == job.id).values(**values)).rowcount == 0:
                conn.execute(insert(jobs).values(id=job.id, **values))

    @contextlib.contextmanager
    def _transaction(self, job_id: str) -> Iterator[None]:
        with self._lock, self.engine.begin() as connection:
            connection.execute(select(jobs.c.id).where(jobs.c.id == job_id).with_for_update())
            self._local.connection = connection
            try:
                yield
            finally:
                self._local.connection = None

    @contextlib.contextmanager
    def exclusive(self, job_id: str) -> Iterator[bool]:
        if not self._postgres:
            with super().exclusive(job_id) as mine:
                yield mine
            return
        key = int(hashlib.sha256(f"copilot-qc-job:{job_id}".encode()).hexdigest()[:15], 16)
        with self.engine.connect() as connection:
            mine = bool(connection.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar())
            connection.commit()
            try:
                yield mine
            finally:
                if mine:
                    connection.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
                    connection.commit()


def open_job_store(settings) -> JobStore:
    """The instance's QC jobs: state in the database when COPILOT_DATABASE_URL is set, else job.json files."""
    if settings.database_url is not None:
        return SharedJobStore(settings.qc_jobs_dir, settings.database)
    return JobStore(settings.qc_jobs_dir)

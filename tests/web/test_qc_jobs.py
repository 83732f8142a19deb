"""QC batch jobs over HTTP: upload, progress, reports, who may see what, and a restart mid-job."""

from __future__ import annotations

import io
import json
import statistics
import time
from pathlib import Path

import pytest

from copilot.audit import hash_payload
from copilot.qc.jobs import RESULTS, STATE
from tests.helpers import NOTE, make_record, wait_for

DEFECT = NOTE.replace("lisinopril 20 mg daily", "lisinopril 20 mg QD")
DEVSET = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "qc_devset.jsonl"
NDJSON = "application/x-ndjson"


def jsonl(count: int, prefix: str = "r") -> bytes:
    return "".join(json.dumps(make_record(DEFECT if i % 2 else NOTE, id=f"{prefix}{i:05d}")) + "\n"
                   for i in range(count)).encode()


def install(app):
    from copilot.web import qc_api

    return app.extensions[qc_api.EXTENSION]


@pytest.fixture
def jobs_app(app, paced_records):
    runner = install(app)
    yield app
    runner.stop()


@pytest.fixture
def api(jobs_app, client):
    return client


def submit(api, headers, data: bytes, content_type: str = NDJSON):
    response = api.post("/api/qc/jobs", data=data, content_type=content_type, headers=headers)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def finished(api, headers, job_id: str) -> dict:
    return wait_for(lambda: (body := api.get(f"/api/qc/jobs/{job_id}", headers=headers).get_json())["status"]
                    in ("done", "failed", "cancelled") and body)


def test_job_lifecycle_from_upload_to_both_reports(api, jobs_app, auth):
    headers = auth("qc_staff")
    job = submit(api, headers, jsonl(6))
    assert job["status"] == "queued" and job["total"] == 6 and set(job["links"]) >= {"self", "report", "cancel"}
    body = finished(api, headers, job["id"])
    assert body["status"] == "done" and (body["done"], body["errors"], body["percent"]) == (6, 0, 100.0)
    assert body["owner"] == "qc" and body["eta_s"] is None and body["summary"]["findings"] == 3

    jsonl_report = api.get(job["links"]["report"], headers=headers)
    assert jsonl_report.status_code == 200 and jsonl_report.mimetype == "application/x-ndjson"
    lines = [json.loads(line) for line in jsonl_report.data.splitlines()]
    assert sorted(r["record_id"] for r in lines) == [f"r{i:05d}" for i in range(6)]
    assert sum(len(r["findings"]) for r in lines) == 3

    html = api.get(job["links"]["report_html"], headers=headers)
    assert html.status_code == 200 and html.mimetype == "text/html" and b"r00001" in html.data
    csp = html.headers["Content-Security-Policy"]
    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    again = api.get(job["links"]["report_html"], headers=headers)
    assert again.data == html.data  # rendered once, then served from disk
    for report in (html, jsonl_report):  # the owner never sees where the server keeps things; nothing cached
        assert report.headers["Cache-Control"] == "no-store"
        assert jobs_app.instance_path.encode() not in report.data and b"/qc/jobs/" not in report.data

    log = jobs_app.extensions["copilot.audit"]
    entries = list(log.entries())
    assert [e.action for e in entries] == ["qc:job-submit", "qc:job-report", "qc:job-report", "qc:job-report"]
    job_file = Path(jobs_app.instance_path) / "qc" / "jobs" / job["id"] / STATE
    saved = json.loads(job_file.read_text())
    assert entries[0].input_hash == hash_payload({"job_id": job["id"], "input_sha256": saved["input_sha256"],
                                                  "bytes": saved["input_bytes"]})
    assert entries[1].output_hash == hash_payload({"job_id": job["id"], "format": "jsonl",
                                                   "sha256": saved["results_sha256"]})
    assert entries[1].sources and log.verify().ok


def test_multipart_upload_with_a_file_field(api, auth):
    headers = auth("admin")
    response = api.post("/api/qc/jobs", headers=headers, content_type="multipart/form-data",
                        data={"file": (io.BytesIO(jsonl(3)), "batch.jsonl")})
    assert response.status_code == 202
    assert finished(api, headers, response.get_json()["id"])["done"] == 3
    missing = api.post("/api/qc/jobs", headers=headers, content_type="multipart/form-data",
                       data={"other": (io.BytesIO(jsonl(1)), "batch.jsonl")})
    assert missing.status_code == 400 and "'file'" in missing.get_json()["error"]


def test_roles_and_bad_uploads(api, jobs_app, auth):
    assert api.post("/api/qc/jobs", data=jsonl(1), content_type=NDJSON).status_code == 401
    denied = api.post("/api/qc/jobs", data=jsonl(1), content_type=NDJSON, headers=auth("clinician"))
    assert denied.status_code == 403 and "qc_staff" in denied.get_json()["error"]
    assert api.get("/api/qc/jobs", headers=auth("clinician")).status_code == 403
    wrong = api.post("/api/qc/jobs", data=jsonl(1), content_type="application/pdf", headers=auth("qc_staff"))
    assert wrong.status_code == 415 and "application/x-ndjson" in wrong.get_json()["error"]
    empty = api.post("/api/qc/jobs", data=b"\n\n", content_type=NDJSON, headers=auth("qc_staff"))
    assert empty.status_code == 400 and "no records" in empty.get_json()["error"]
    garbage = api.post("/api/qc/jobs", data=b"id,name\n1,x\n", content_type="text/plain", headers=auth("qc_staff"))
    assert garbage.status_code == 400 and "line 1 is not JSON" in garbage.get_json()["error"]
    settings = jobs_app.extensions["copilot.settings"]
    jobs_app.extensions["copilot.settings"] = settings.model_copy(update={"qc_job_max_bytes": 4096})
    big = api.post("/api/qc/jobs", data=jsonl(20), content_type=NDJSON, headers=auth("qc_staff"))
    assert big.status_code == 413 and "error" in big.get_json()
    assert list((Path(jobs_app.instance_path) / "qc" / "jobs").iterdir()) == []


def test_an_upload_to_a_full_disk_is_507_and_audited(api, jobs_app, auth, monkeypatch):
    import errno

    from copilot.qc.jobs import JobStore

    def full(self, owner, stream, max_bytes):
        raise OSError(errno.ENOSPC, "No space left on device", "/srv/instance/qc/jobs/x/input.jsonl")

    monkeypatch.setattr(JobStore, "create", full)
    response = api.post("/api/qc/jobs", data=jsonl(2), content_type=NDJSON, headers=auth("qc_staff"))
    assert response.status_code == 507 and "disk is full" in response.get_json()["error"]
    assert b"/srv/instance" not in response.data
    [entry] = jobs_app.extensions["copilot.audit"].entries()
    assert (entry.action, entry.outcome) == ("qc:job-submit", "error")


def test_only_the_owner_or_an_admin_sees_a_job(api, jobs_app, auth):
    other = {"Authorization": "Bearer " + jobs_app.extensions["copilot.users"].add("qc2", "qc_staff")}
    job = submit(api, auth("qc_staff"), jsonl(2))
    finished(api, auth("qc_staff"), job["id"])
    for path in (f"/api/qc/jobs/{job['id']}", f"/api/qc/jobs/{job['id']}/report",
                 f"/api/qc/jobs/{job['id']}/report?format=html"):
        response = api.get(path, headers=other)
        assert response.status_code == 404 and response.get_json() == {"error": "no such job"}
    assert api.post(f"/api/qc/jobs/{job['id']}/cancel", headers=other).status_code == 404
    assert api.get("/api/qc/jobs", headers=other).get_json()["jobs"] == []
    assert [j["id"] for j in api.get("/api/qc/jobs", headers=auth("qc_staff")).get_json()["jobs"]] == [job["id"]]
    assert api.get(f"/api/qc/jobs/{job['id']}", headers=auth("admin")).status_code == 200
    assert [j["id"] for j in api.get("/api/qc/jobs", headers=auth("admin")).get_json()["jobs"]] == [job["id"]]


@pytest.mark.parametrize("path", ["/api/qc/jobs/..%2F..%2Fusers.db", "/api/qc/jobs/%2e%2e", "/api/qc/jobs/..",
                                  "/api/qc/jobs/%2e%2e/report", "/api/qc/jobs/../../audit/audit.db",
                                  "/api/qc/jobs/%2E%2E%2F%2E%2E/report?format=html", "/api/qc/jobs/.incoming-x",
                                  "/api/qc/jobs/" + "F" * 32, "/api/qc/jobs/" + "0" * 32 + "%00"])
def test_path_tricks_in_job_ids_are_404(api, auth, path):
    response = api.get(path, headers=auth("admin"))
    assert response.status_code == 404


def test_reports_wait_for_the_job_and_cancel_stops_it(api, auth):
    headers = auth("qc_staff")
    running = submit(api, headers, jsonl(3000, prefix="a"))
    queued = submit(api, headers, jsonl(2, prefix="b"))
    early = api.get(queued["links"]["report"], headers=headers)
    assert early.status_code == 409 and early.get_json()["status"] == "queued"
    assert api.get(queued["links"]["report"] + "?format=pdf", headers=headers).status_code == 400
    assert api.post(queued["links"]["cancel"], headers=headers).get_json()["status"] == "cancelled"
    wait_for(lambda: api.get(running["links"]["self"], headers=headers).get_json()["done"] > 0)
    progress = api.get(running["links"]["self"], headers=headers).get_json()
    assert progress["status"] == "running" and 0 < progress["done"] < progress["total"]
    assert api.post(running["links"]["cancel"], headers=headers).status_code == 202
    assert finished(api, headers, running["id"])["status"] == "cancelled"
    assert api.post(running["links"]["cancel"], headers=headers).status_code == 409
    assert api.get(running["links"]["report"], headers=headers).status_code == 409


def test_a_restart_mid_job_finishes_it_with_no_record_lost_or_repeated(api, jobs_app, auth):
    """Stop the first app's runner mid-way, leave job.json as a crash would (running, torn last line),
    then a new app on the same instance dir resumes it."""
    from copilot.web import create_app

    headers = auth("qc_staff")
    job = submit(api, headers, jsonl(600))
    folder = Path(jobs_app.instance_path) / "qc" / "jobs" / job["id"]
    wait_for(lambda: api.get(job["links"]["self"], headers=headers).get_json()["done"] >= 20)
    install(jobs_app).stop()
    state = json.loads((folder / STATE).read_text())
    assert state["status"] == "queued" and 20 <= state["done"] < 600
    state["status"] = "running"
    (folder / STATE).write_text(json.dumps(state))
    with (folder / RESULTS).open("a") as handle:
        handle.write('{"record_id": "r0')

    settings = jobs_app.extensions["copilot.settings"]
    restarted = create_app({"TESTING": True, "home": settings.home, "knowledge_home": settings.knowledge_home},
                           engine=jobs_app.extensions["copilot.engine"])
    runner = install(restarted)
    try:
        client = restarted.test_client()
        body = finished(client, headers, job["id"])
        assert body["status"] == "done" and body["done"] == 600 and body["errors"] == 0
        report = client.get(job["links"]["report"], headers=headers)
        ids = [json.loads(line)["record_id"] for line in report.data.splitlines()]
        assert len(ids) == 600 and sorted(ids) == [f"r{i:05d}" for i in range(600)]
    finally:
        runner.stop()


def test_single_record_qc_stays_fast_while_a_job_runs(api, auth):
    records = [json.loads(line)["record"] for line in DEVSET.read_text().splitlines()]
    upload = "".join(json.dumps({**r, "id": f"{r['id']}-{n}"}) + "\n" for n in range(2) for r in records).encode()
    headers = auth("qc_staff")
    job = submit(api, headers, upload)
    wait_for(lambda: api.get(job["links"]["self"], headers=headers).get_json()["status"] == "running")
    latencies = []
    for record in records[:40]:
        started = time.perf_counter()
        response = api.post("/api/qc", json=record, headers=auth("clinician"))
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200
    still = api.get(job["links"]["self"], headers=headers).get_json()
    api.post(job["links"]["cancel"], headers=headers)
    p95 = statistics.quantiles(latencies, n=20)[-1]
    assert still["status"] == "running", "the job ended before the measurement did"
    assert p95 < 1.0, f"p95 {p95:.3f}s"

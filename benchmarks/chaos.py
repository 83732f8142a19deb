"""Faults against a running copilot, then restarts and a check that nothing was lost or repeated.

On a scratch instance (the prepared models and knowledge linked in; run `make setup` first, or
pass --home), with the real `copilot serve` and the real model:

  1. clients close their sockets at random points (mid-request, before the answer, mid-stream;
     FIN or RST) while the server answers static files, health, QC, generation and drafts;
  2. a batch job of --records lines (with repeated ids, malformed, NaN and 5,000-deep lines) is
     killed with SIGKILL --kills times; before each restart its state files are damaged (a torn
     and a garbled result line, a garbage job.json, a lost lock file);
  3. the server is killed with SIGKILL under QC load (audit appends in flight) and during drafts;
  4. a process appending to an audit log is killed at random moments --appender-kills times;
  5. the disk fills up: a small tmpfs instance directory when this machine allows mounting one,
     else a file-size limit on the server process (writes fail with EFBIG instead of ENOSPC).

After every restart: the server answers, the audit chain verifies; at the end every job line is
answered exactly once. Prints the counts and writes them to --out; exit status 1 if any target
is missed (a server death, a 5xx other than the deliberate 503/507, an audit chain that fails,
a job line lost or repeated, audit entries outside what the requests allow).

    python benchmarks/chaos.py --home instance          # what `make chaos` runs
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import random
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from copilot.audit import AuditLog, hash_payload
from scratch_server import Server, scratch_home  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

REPO = Path(__file__).resolve().parents[1]
DEVSET = REPO / "benchmarks" / "data" / "qc_devset.jsonl"
TRANSCRIPT = ("[doctor] what brings you in today?\n[patient] my right knee has hurt for two weeks since a fall.\n"
              "[doctor] any medicines?\n[patient] ibuprofen four hundred milligrams twice a day.")
STATIC = "/static/sidebar.js"


class Tally:
    """Counts and problems of the whole run (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.problems: list[str] = []

    def status(self, kind: str, code: int) -> None:
        with self.lock:
            self.statuses[f"{kind}:{code}"] += 1

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)
            print(f"  PROBLEM: {text}", file=sys.stderr, flush=True)

    def server_errors(self) -> int:
        return sum(n for key, n in self.statuses.items()
                   if key.split(":")[1].startswith("5") and key.split(":")[1] not in ("503", "507"))


def records() -> list[dict]:
    rows = [json.loads(line) for line in DEVSET.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row.get("record", row) for row in rows]


def audit_count(home: Path) -> int:
    return AuditLog.for_home(home, create=False).count()


def verify_audit(home: Path) -> tuple[bool, str]:
    """`copilot audit verify` on the instance, as an operator would run it."""
    done = subprocess.run([sys.executable, "-m", "copilot", "audit", "verify"], capture_output=True, text=True,
                          env=dict(os.environ, COPILOT_HOME=str(home)), timeout=600)
    return done.returncode == 0, (done.stdout + done.stderr).strip().splitlines()[0] if done.stdout else done.stderr


def http_request(method: str, path: str, token: str | None, body: object = None) -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


def close(sock: socket.socket, reset: bool) -> None:
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# 1. closed sockets --------------------------------------------------------------------------------


def closed_sockets(server: Server, tokens: dict, home: Path, count: int, rng: random.Random, tally: Tally) -> dict:
    clinician = tokens["clinician"]
    kinds = {
        "static": (http_request("GET", STATIC, None), False, False),
        "health": (http_request("GET", "/health", None), False, False),
        "qc": (http_request("POST", "/api/qc", clinician, rng.choice(records())), True, False),
        "generate": (http_request("POST", "/api/generate", clinician, {"prompt": "Explain sepsis.",
                                                                        "max_new_tokens": 96}), True, True),
        "draft": (http_request("POST", "/api/draft", clinician, {"transcript": TRANSCRIPT, "max_new_tokens": 32,
                                                                   "sections": ["chief_complaint"]}), True, True),
    }
    before = audit_count(home)
    reached = maybe = 0
    cuts: Counter = Counter()
    for _ in range(count):
        kind = rng.choice(sorted(kinds))
        raw, patient_data, streams = kinds[kind]
        cut = rng.choice(["mid-request", "before-answer", "mid-answer"])
        reset = rng.random() < 0.5
        cuts[f"{kind}/{cut}/{'RST' if reset else 'FIN'}"] += 1
        try:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=120)
            if cut == "mid-request":
                sock.sendall(raw[:rng.randrange(1, len(raw))])
            else:
                sock.sendall(raw)
            if cut == "mid-answer":
                received = b""
                want = b"event: token" if streams else b"\r\n\r\n"
                while want not in received:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    received += chunk
                status = int(received.split(b" ", 2)[1]) if received.startswith(b"HTTP/") else 0
                tally.status(kind, status)
                reached += patient_data
            elif cut == "before-answer":
                maybe += patient_data
            close(sock, reset)
        except OSError as exc:
            tally.problem(f"socket chaos: {kind}/{cut}: {exc!r}")
        if not server.alive():
            tally.problem(f"the server died after a {kind} client closed {cut}")
            server.start()
    time.sleep(3)  # dropped streams notice the closed socket at their next token, then audit
    found = audit_count(home) - before
    ok = reached <= found <= reached + maybe
    if not ok:
        tally.problem(f"closed sockets: {found} audit entries, expected {reached} to {reached + maybe}")
    return {"connections": count, "by_kind_cut_close": dict(sorted(cuts.items())),
            "audit": {"reached_endpoint": reached, "maybe_reached": maybe, "entries": found, "ok": ok}}


# 2. a batch job killed mid-way, its state damaged --------------------------------------------------


def job_upload(count: int, rng: random.Random) -> tuple[bytes, dict]:
    base = records()
    lines, injected = [], Counter()
    for index in range(count):
        if index and index % 97 == 0:
            lines.append(json.dumps(dict(rng.choice(base), id=f"chaos-{rng.randrange(index):05d}")))
            injected["duplicate"] += 1  # an id an earlier line already used
        elif index % 101 == 50:
            lines.append('{"id": "broken-%d", "documents": [' % index)
            injected["malformed"] += 1
        elif index == count // 2:
            lines.append("[" * 5000 + "]" * 5000)
            injected["deep"] += 1
        elif index == count // 3:
            lines.append('{"id": "nan", "documents": NaN}')
            injected["nan"] += 1
        else:
            lines.append(json.dumps(dict(rng.choice(base), id=f"chaos-{index:05d}")))
        if index % 500 == 499:
            lines.append("")  # blank lines are not records
    return ("\n".join(lines) + "\n").encode(), dict(injected)


def damage(folder: Path, round_: int, rng: random.Random) -> str:
    """What a crash, a full disk or a careless hand leaves in a job's folder."""
    results, state, lock = folder / "results.jsonl", folder / "job.json", folder / "lock"
    if round_ % 3 == 0:
        with results.open("ab") as handle:
            handle.write(b'{"record_id": "torn", "source": "input.js')
        state.write_bytes(state.read_bytes()[: rng.randrange(1, 40)])
        return "torn result line, truncated job.json"
    if round_ % 3 == 1:
        lines = results.read_bytes().splitlines(keepends=True)
        if len(lines) > 2:
            lines[len(lines) // 2] = b"\x00\x17garbled by a bad sector\n"
            results.write_bytes(b"".join(lines))
        lock.unlink(missing_ok=True)
        return "garbled result line in the middle, lock file gone"
    state.write_text("[]")
    return "job.json replaced by another JSON value"


def job_with_kills(server: Server, tokens: dict, home: Path, count: int, kills: int, rng: random.Random,
                   tally: Tally) -> dict:
    headers = {"Authorization": f"Bearer {tokens['qc_staff']}"}
    upload, injected = job_upload(count, rng)
    response = httpx.post(f"{server.url}/api/qc/jobs", content=upload, timeout=300,
                          headers={**headers, "Content-Type": "application/x-ndjson"})
    tally.status("job-submit", response.status_code)
    job = response.json()
    folder = home / "qc" / "jobs" / job["id"]
    expected = [n for n, line in enumerate(upload.decode().split("\n")[:-1], 1) if line.strip()]
    damages = []
    for round_ in range(kills):
        target = len(expected) * (round_ + 1) // (kills + 1)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            status = httpx.get(f"{server.url}/api/qc/jobs/{job['id']}", headers=headers, timeout=60).json()
            if status["done"] >= target or status["status"] not in ("queued", "running"):
                break
            time.sleep(0.2)
        server.kill()
        damages.append(f"killed at {status['done']}/{len(expected)} ({status['status']}); "
                       + damage(folder, round_, rng))
        server.start()
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        status = httpx.get(f"{server.url}/api/qc/jobs/{job['id']}", headers=headers, timeout=60).json()
        if status["status"] not in ("queued", "running"):
            break
        time.sleep(0.5)
    report = httpx.get(f"{server.url}/api/qc/jobs/{job['id']}/report", headers=headers, timeout=300)
    tally.status("job-report", report.status_code)
    rows = [json.loads(line) for line in report.text.splitlines() if line.strip()] if report.status_code == 200 else []
    answered = Counter(row["line"] for row in rows)
    lost = [n for n in expected if n not in answered]
    repeated = [n for n, k in answered.items() if k > 1]
    duplicates = sum("duplicate record id" in (row["error"] or "") for row in rows)
    errors = sum(row["status"] == "error" for row in rows)
    if status["status"] != "done" or lost or repeated:
        tally.problem(f"job {job['id']}: status {status['status']}, {len(lost)} lines lost, {len(repeated)} repeated")
    if duplicates != injected.get("duplicate", 0):
        tally.problem(f"job: {duplicates} duplicates reported, {injected.get('duplicate', 0)} injected")
    return {"lines": len(expected), "kills": kills, "damage_before_restarts": damages, "status": status["status"],
            "answered_once": sum(1 for n in expected if answered.get(n) == 1), "lost": len(lost),
            "repeated": len(repeated), "error_rows": errors, "injected": injected,
            "duplicates_reported": duplicates}


# 3. kills under QC load and during drafts ------------------------------------------------------------


def kills_under_load(server: Server, tokens: dict, home: Path, rounds: int, rng: random.Random,
                     tally: Tally) -> dict:
    clinician = {"Authorization": f"Bearer {tokens['clinician']}"}
    base = records()
    results = []
    for round_ in range(rounds):
        stop, streaming = threading.Event(), threading.Event()
        drafting = round_ % 2 == 1  # alternate: QC appends in flight; drafts streaming
        in_flight = Counter()

        def qc_loop(seed: int):
            local = random.Random(seed)
            with httpx.Client(base_url=server.url, headers=clinician, timeout=60) as client:
                while not stop.is_set():
                    try:
                        tally.status("qc", client.post("/api/qc", json=local.choice(base)).status_code)
                    except httpx.HTTPError:
                        return  # the kill

        def draft_once():
            body = {"transcript": TRANSCRIPT, "sections": ["chief_complaint", "hpi"], "max_new_tokens": 96}
            with contextlib.suppress(httpx.HTTPError):
                with httpx.stream("POST", f"{server.url}/api/draft", json=body, headers=clinician, timeout=600) as r:
                    tally.status("draft", r.status_code)
                    in_flight["draft"] += 1
                    for line in r.iter_lines():
                        if line.startswith("event: token"):
                            streaming.set()
                        if line.startswith("event: done"):
                            in_flight["draft"] -= 1

        workers = [threading.Thread(target=qc_loop, args=(rng.random(),)) for _ in range(4)]
        if drafting:
            workers += [threading.Thread(target=draft_once) for _ in range(2)]
        before = audit_count(home)
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 600  # kill in the thick of it: drafts streaming, or QC appends flowing
        while time.monotonic() < deadline and not (streaming.is_set() if drafting else audit_count(home) - before > 20):
            time.sleep(0.1)
        time.sleep(rng.uniform(0.0, 1.0))
        server.kill()
        stop.set()
        for worker in workers:
            worker.join()
        written = audit_count(home) - before
        server.start()
        ok, said = verify_audit(home)
        if not ok:
            tally.problem(f"audit after a kill {'during drafts' if drafting else 'under QC load'}: {said}")
        results.append({"during": "drafts and QC" if drafting else "QC (audit appends)", "entries_before_kill":
                        written, "drafts_streaming_at_kill": in_flight["draft"], "verify": said})
    return {"rounds": rounds, "restarts_verified": sum(r["verify"].startswith("ok") for r in results),
            "rounds_detail": results}


# 4. an audit appender killed at random moments -------------------------------------------------------

APPENDER = """
import sys
from copilot.audit import AuditLog, hash_payload
log = AuditLog.for_home(sys.argv[1])
i = 0
while True:
    i += 1
    log.append(user="chaos", role="clinician", action="qc", patient_ref=f"Patient/{i}", input_hash=hash_payload(i),
               output_hash=hash_payload(-i), sources=["drug.warfarin"], tokens=i, latency_ms=1.5)
"""


def appender_kills(kills: int, rng: random.Random, tally: Tally) -> dict:
    home = Path(tempfile.mkdtemp(prefix="copilot-chaos-audit-"))
    AuditLog.for_home(home).append(user="chaos", role="clinician", action="qc", input_hash=hash_payload(0))
    verified = 0
    for _ in range(kills):
        child = subprocess.Popen([sys.executable, "-c", APPENDER, str(home)], env=dict(os.environ))
        time.sleep(rng.uniform(0.6, 2.0))
        child.kill()
        child.wait()
        result = AuditLog.for_home(home, create=False).verify()
        verified += result.ok
        if not result.ok:
            tally.problem(f"audit appender kill: {result.reason}")
        AuditLog.for_home(home).close()  # a writer can open it again and extend the chain
    entries = AuditLog.for_home(home, create=False).count()
    return {"kills": kills, "verified_after_kill": verified, "entries": entries}


# 5. a full disk ------------------------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(size_mib: int):
    """A tmpfs of ``size_mib`` (mounting needs root and a container that allows it); None if impossible."""
    mountpoint = Path(tempfile.mkdtemp(prefix="copilot-chaos-disk-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs", str(mountpoint)],
                             capture_output=True).returncode == 0
    try:
        yield mountpoint if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * (1 << 20))
                handle.flush()
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EFBIG):
                raise
    return filler


def disk_full(source_home: Path, size_mib: int, tally: Tally) -> dict:
    with small_disk(size_mib) as mountpoint:
        mode = "tmpfs" if mountpoint else "file-size limit (EFBIG)"
        home, tokens = scratch_home(source_home, (mountpoint or Path(tempfile.mkdtemp())) / "home")
        server = Server(home, log=Path(tempfile.mkdtemp()) / "serve.log")  # the server's log off the full disk
        server.start()
        clinician = {"Authorization": f"Bearer {tokens['clinician']}"}
        record = records()[0]
        statuses: Counter = Counter()

        def call(phase: str, method: str, path: str, **kwargs) -> int:
            code = httpx.request(method, f"{server.url}{path}", timeout=300, **kwargs).status_code
            statuses[f"{phase} {path}:{code}"] += 1
            tally.status(f"disk-{phase}", code)
            return code

        before = [call("before", "POST", "/api/qc", json=record, headers=clinician) for _ in range(3)]
        if mountpoint:
            filler = fill(mountpoint)
        else:
            sizes = max(p.stat().st_size for p in (home / "audit").iterdir() if p.is_file())
            resource.prlimit(server.process.pid, resource.RLIMIT_FSIZE, (sizes, sizes))
            filler = None
        for _ in range(5):
            call("full", "POST", "/api/qc", json=record, headers=clinician)
        call("full", "POST", "/api/generate", json={"prompt": "Define sepsis.", "max_new_tokens": 8},
             headers=clinician)
        call("full", "POST", "/api/qc/jobs", content=json.dumps(record).encode() + b"\n",
             headers={"Authorization": f"Bearer {tokens['qc_staff']}", "Content-Type": "application/x-ndjson"})
        health = call("full", "GET", "/health")
        alive = server.alive()
        if filler is not None:
            filler.unlink()
        else:
            resource.prlimit(server.process.pid, resource.RLIMIT_FSIZE,
                             (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        after = [call("after", "POST", "/api/qc", json=record, headers=clinician) for _ in range(3)]
        server.stop()
        ok, said = verify_audit(home)
        if not (alive and health == 200 and ok and before == [200] * 3 and after == [200] * 3):
            tally.problem(f"disk full: alive {alive}, health {health}, before {before}, after {after}, audit {said}")
        return {"mode": mode, "size_mib": size_mib if mountpoint else None, "statuses": dict(sorted(statuses.items())),
                "server_alive_when_full": alive, "audit_after": said, "deaths": server.deaths}


# ------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("COPILOT_HOME", REPO / "instance")),
                        help="prepared instance whose models and knowledge are used (default $COPILOT_HOME or ./instance)")
    parser.add_argument("--records", type=int, default=3000, help="lines of the batch job (default 3000)")
    parser.add_argument("--kills", type=int, default=3, help="kills of the server mid-job (default 3)")
    parser.add_argument("--load-kills", type=int, default=4, help="kills under QC load and during drafts (default 4)")
    parser.add_argument("--appender-kills", type=int, default=20, help="kills of an audit appender (default 20)")
    parser.add_argument("--sockets", type=int, default=60, help="connections closed at random points (default 60)")
    parser.add_argument("--disk-mib", type=int, default=64, help="size of the full-disk instance's tmpfs (default 64)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "chaos.json")
    args = parser.parse_args()
    rng, tally = random.Random(args.seed), Tally()
    home, tokens = scratch_home(args.home)
    server = Server(home)
    report: dict = {"home": str(home)}
    started = time.monotonic()
    try:
        server.start()
        print("chaos: closed sockets", file=sys.stderr, flush=True)
        report["closed_sockets"] = closed_sockets(server, tokens, home, args.sockets, rng, tally)
        print(f"chaos: a {args.records}-line job killed {args.kills} times", file=sys.stderr, flush=True)
        report["job"] = job_with_kills(server, tokens, home, args.records, args.kills, rng, tally)
        print(f"chaos: {args.load_kills} kills under QC load and during drafts", file=sys.stderr, flush=True)
        report["kills_under_load"] = kills_under_load(server, tokens, home, args.load_kills, rng, tally)
        print(f"chaos: {args.appender_kills} kills of an audit appender", file=sys.stderr, flush=True)
        report["audit_appender"] = appender_kills(args.appender_kills, rng, tally)
        print("chaos: a full disk", file=sys.stderr, flush=True)
        report["disk_full"] = disk_full(args.home, args.disk_mib, tally)
        healthy = httpx.get(f"{server.url}/health", timeout=60).status_code == 200 and server.alive()
    finally:
        deaths = server.deaths
        server.stop()
    ok, said = verify_audit(home)
    if not ok:
        tally.problem(f"final audit verify: {said}")
    report.update({
        "minutes": round((time.monotonic() - started) / 60, 1),
        "server_deaths": deaths + report["disk_full"]["deaths"],
        "server_errors_5xx": tally.server_errors(),
        "statuses": dict(sorted(tally.statuses.items())),
        "healthy_at_end": healthy, "final_audit_verify": said, "problems": tally.problems,
    })
    report["pass"] = not tally.problems and report["server_deaths"] == 0 and report["server_errors_5xx"] == 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    job = report["job"]
    print(f"""
server deaths                 {report['server_deaths']}
5xx (other than 503/507)      {report['server_errors_5xx']}
closed sockets                {report['closed_sockets']['connections']} connections; audit entries \
{report['closed_sockets']['audit']['entries']} for {report['closed_sockets']['audit']['reached_endpoint']} requests \
that reached an endpoint (+{report['closed_sockets']['audit']['maybe_reached']} that may have)
batch job                     {job['lines']} lines, killed {job['kills']} times with damaged state; {job['status']}: \
{job['answered_once']} answered once, {job['lost']} lost, {job['repeated']} repeated; {job['duplicates_reported']} \
duplicates reported of {job['injected'].get('duplicate', 0)}; {job['error_rows']} error rows
kills under load              {report['kills_under_load']['rounds']} (QC appends, drafts); audit verified after \
{report['kills_under_load']['restarts_verified']}
audit appender kills          {report['audit_appender']['kills']}; chain verified after \
{report['audit_appender']['verified_after_kill']}; {report['audit_appender']['entries']} entries
disk full ({report['disk_full']['mode']})    {report['disk_full']['statuses']}
final audit verify            {said}
problems                      {len(tally.problems)}
{'PASS' if report['pass'] else 'FAIL'} ({report['minutes']} min); written {args.out}""")
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())

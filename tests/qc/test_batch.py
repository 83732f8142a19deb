import json
import os
import signal
import subprocess
import sys
import time

import pytest

from copilot.qc.batch import BatchError, completed_positions, run_batch
from copilot.qc.report import write_report
from tests.helpers import NOTE, make_record


def write_batch(path, count, bad_every=0):
    with path.open("w") as handle:
        for index in range(count):
            if bad_every and index % bad_every == bad_every - 1:
                handle.write('{"id": "broken-%d", "documents": 5}\n' % index)
                continue
            text = NOTE if index % 3 else NOTE.replace("lisinopril 20 mg daily", "lisinopril 20 mg QD")
            handle.write(json.dumps(make_record(text, id=f"r{index:05d}")) + "\n")


def read(out):
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_batch_writes_one_line_per_record_and_reports_errors(shipped_home, tmp_path):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_batch(source, 30, bad_every=10)
    summary = run_batch([source], out, shipped_home, workers=2, show_progress=False)
    lines = read(out)
    assert len(lines) == 30 and summary.records == 30 and summary.errors == 3
    assert sorted(r["record_id"] for r in lines) == sorted({r["record_id"] for r in lines})
    broken = [r for r in lines if r["status"] == "error"]
    assert all("documents" in r["error"] and r["findings"] == [] for r in broken)
    flagged = [r for r in lines if r["findings"]]
    assert len(flagged) == 9 and all(f["rule_id"] == "documentation.do_not_use" for r in flagged for f in r["findings"])


def test_existing_output_is_never_overwritten_silently(shipped_home, tmp_path):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_batch(source, 2)
    out.write_text('{"record_id": "keep-me", "status": "ok", "error": null, "findings": []}\n')
    with pytest.raises(BatchError, match="--resume"):
        run_batch([source], out, shipped_home, show_progress=False)
    assert "keep-me" in out.read_text()


def test_resume_after_kill_loses_and_duplicates_nothing(shipped_home, tmp_path):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_batch(source, 600)
    env = dict(os.environ, COPILOT_HOME=str(shipped_home))
    command = [sys.executable, "-m", "copilot", "qc", str(source), "--out", str(out), "--quiet"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 20_000):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = out.read_bytes()
    assert 0 < partial.count(b"\n") < 600, "the run should be killed part-way"
    with out.open("ab") as handle:
        handle.write(b'{"record_id": "torn')  # a line cut off by the kill
    done = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ids = [r["record_id"] for r in read(out)]
    assert len(ids) == 600 and len(set(ids)) == 600
    assert "already done" in done.stderr


def test_completed_positions_cut_a_torn_line_and_drop_a_damaged_one(tmp_path):
    out = tmp_path / "o.jsonl"
    row = {"record_id": "a", "source": "in.jsonl", "line": 1, "status": "ok", "error": None, "findings": []}
    out.write_bytes(json.dumps(row).encode() + b'\n{"record_id": "b", "sou\x00\n'
                    + json.dumps(dict(row, line=3)).encode() + b'\n{"record_')
    assert completed_positions(out) == {"in.jsonl:1", "in.jsonl:3"}
    assert out.read_bytes() == (json.dumps(row) + "\n" + json.dumps(dict(row, line=3)) + "\n").encode()


def test_duplicate_ids_are_reported_not_merged(shipped_home, tmp_path):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text(json.dumps(make_record(id="same")) + "\n" + json.dumps(make_record(id="same")) + "\n")
    summary = run_batch([source], out, shipped_home, show_progress=False)
    lines = read(out)
    assert [r["status"] for r in lines] == ["ok", "error"] and "duplicate record id" in lines[1]["error"]
    assert [r["line"] for r in lines] == [1, 2] and "first at" in lines[1]["error"] and summary.duplicates == 1


def test_a_repeated_id_after_a_restart_is_reported_not_dropped(shipped_home, tmp_path):
    """The issue's 3,239 of 3,240: resume keyed on record ids skipped a later record whose id repeated an
    earlier, already written one. Resume keys on the input position."""
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = ["a", "b", "c", "a", "d"]
    source.write_text("".join(json.dumps(make_record(id=i)) + "\n" for i in ids))
    head = tmp_path / "head.jsonl"
    head.write_text("".join(json.dumps(make_record(id=i)) + "\n" for i in ids[:3]))
    run_batch([head], out, shipped_home, show_progress=False)
    out.write_text(out.read_text().replace(str(head), str(source)))  # as if the first 3 lines of `source` ran
    summary = run_batch([source], out, shipped_home, resume=True, show_progress=False)
    lines = read(out)
    assert summary.skipped == 3 and summary.records == 2 and len(lines) == 5
    assert sorted(r["line"] for r in lines) == [1, 2, 3, 4, 5]
    repeated = next(r for r in lines if r["line"] == 4)
    assert repeated["status"] == "error" and "duplicate record id 'a'" in repeated["error"]
    assert f"{source}:1" in repeated["error"]


def test_one_bad_line_is_one_error_row_however_bad(shipped_home, tmp_path):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    bad = [b"[" * 5000 + b"]" * 5000, b'{"id": "nan", "documents": NaN}', b"9" * 5000, b'{"id": "\\ud800"}',
           b"\xff\xfe{}", b'{"id": "deep", "documents": ' + b"[" * 900 + b"]" * 900 + b"}"]
    lines = [json.dumps(make_record(id="first")).encode()] + bad + [json.dumps(make_record(id="last")).encode()]
    source.write_bytes(b"\n".join(lines) + b"\n")
    summary = run_batch([source], out, shipped_home, show_progress=False)
    rows = {r["line"]: r for r in read(out)}
    assert sorted(rows) == list(range(1, len(lines) + 1)) and summary.errors == len(bad)
    assert rows[1]["status"] == rows[len(lines)]["status"] == "ok"
    assert "nested too deeply" in rows[2]["error"] and "NaN" in rows[3]["error"]
    assert all(rows[n]["status"] == "error" and rows[n]["error"].startswith(f"{source}:{n}: ") for n in range(2, 8))


def test_resume_refuses_results_of_other_inputs(shipped_home, tmp_path):
    first, other, out = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "out.jsonl"
    write_batch(first, 3)
    write_batch(other, 3)
    run_batch([first], out, shipped_home, show_progress=False)
    with pytest.raises(BatchError, match="not among these inputs"):
        run_batch([other], out, shipped_home, resume=True, show_progress=False)
    assert len(read(out)) == 3


def test_html_report(shipped_home, tmp_path):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_batch(source, 12, bad_every=6)
    run_batch([source], out, shipped_home, show_progress=False)
    html = write_report(out, tmp_path / "report.html").read_text()
    assert "<svg" in html and "documentation.do_not_use" in html and "<mark>QD" in html
    assert "records not checked" in html.lower() and "broken-5" in html
    assert "http://" not in html.replace('href="http', "") and "<script src" not in html  # no CDN


def test_cli_exit_status_and_directory_input(shipped_home, tmp_path, monkeypatch, capsys):
    from copilot.cli import main

    folder = tmp_path / "records"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(make_record(id="a")))
    (folder / "b.json").write_text("{not json")
    monkeypatch.setenv("COPILOT_HOME", str(shipped_home))
    assert main(["qc", str(folder), "--out", str(tmp_path / "o.jsonl"), "--quiet"]) == 1
    assert "1 not checked" in capsys.readouterr().err
    (folder / "b.json").unlink()
    assert main(["qc", str(folder), "--out", str(tmp_path / "o2.jsonl"), "--quiet", "--html", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").is_file()

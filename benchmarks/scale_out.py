"""Batch QC beyond one process: the local runner against Ray, on one node and on a head plus a worker node.

    python benchmarks/scale_out.py                                  # 20,000 records, every mode
    python benchmarks/scale_out.py --records 2000 --modes local-1,ray-1node
    python benchmarks/scale_out.py --out benchmarks/results/scale_out.json

Writes a JSONL of ``--records`` dev-set records (benchmarks/data/qc_devset.jsonl, cycled, each with its own
id) and checks it in each mode with a `copilot qc` process of its own, timing the whole run (start-up, and
Ray's connection and actor creation, included: that is what a QC office waits for):

* ``local-1``  one process (the reference output: input order)
* ``local-N``  N local worker processes (``--workers``)
* ``ray-1node``  a private single-node Ray (``ray.init(num_cpus=N)``), N actors
* ``ray-2nodes``  a head and a worker node started with ``ray start --block`` on this machine (N/2 CPUs
  each, their own temp dir and ports), joined with ``--ray HOST:PORT``; stopped by their process ids

Reports records/s per mode, Ray's overhead against ``local-N`` (1 - ray / local, the issue's target is at
most 20%) and whether each output is identical to ``local-1`` (Ray: byte for byte; local-N, which
writes in completion order: after sorting lines). Exit status 1 when an output differs. On this 2-core
machine the figures show correctness and overhead, not speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MODES = ("local-1", "local-N", "ray-1node", "ray-2nodes")


def write_inputs(path: Path, records: int) -> None:
    rows = [json.loads(line) for line in (REPO / "benchmarks" / "data" / "qc_devset.jsonl").open(encoding="utf-8")]
    with path.open("w", encoding="utf-8") as handle:
        for index in range(records):
            record = dict(rows[index % len(rows)]["record"], id=f"scale-{index:06d}")
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ray_program() -> list[str]:
    """The `ray` command of this interpreter's Ray (a worktree venv may not have the script)."""
    return [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"]


class TwoNodes:
    """A Ray head and one worker node on this machine, as `ray start` would run them on two servers."""

    def __init__(self, cpus: int):
        self.temp = tempfile.mkdtemp(prefix="scale-ray-")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        per_node = max(1, cpus // 2)
        common = ["--block", "--disable-usage-stats", f"--num-cpus={per_node}"]
        env = dict(os.environ, RAY_AUTH_MODE="disabled")
        self.processes = [subprocess.Popen(
            [*ray_program(), "start", "--head", f"--port={self.port}", "--node-ip-address=127.0.0.1",
             "--include-dashboard=false", f"--temp-dir={self.temp}", *common],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)]
        self._wait(nodes=1)
        self.processes.append(subprocess.Popen(
            [*ray_program(), "start", f"--address={self.address}", "--node-ip-address=127.0.0.1", *common],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True))
        self._wait(nodes=2)

    def _wait(self, nodes: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        probe = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
                 "print(sum(1 for n in ray.nodes() if n['Alive']))")
        while time.monotonic() < deadline:
            done = subprocess.run([sys.executable, "-c", probe, self.address], capture_output=True, text=True,
                                  timeout=120, env=dict(os.environ, RAY_AUTH_MODE="disabled"))
            if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(nodes)]:
                return
            if any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f"ray start exited: {self.processes[-1].stderr.read().decode()[-1500:]}")
            time.sleep(1)
        raise RuntimeError(f"the Ray cluster did not reach {nodes} node(s) in {timeout:.0f}s")

    def stop(self) -> None:
        for process in reversed(self.processes):  # each `ray start --block` stops its own node's processes
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def run_mode(mode: str, source: Path, out: Path, home: Path, workers: int) -> dict:
    """One `copilot qc` run in its own process, as a QC office would start it; timed from start to exit."""
    command = [sys.executable, "-m", "copilot", "qc", str(source), "--out", str(out), "--quiet"]
    env = dict(os.environ, COPILOT_HOME=str(home))
    cluster = None
    if mode == "local-N":
        command += ["--workers", str(workers)]
    elif mode == "ray-1node":
        command += ["--workers", str(workers), "--ray", "local"]
    elif mode == "ray-2nodes":
        cluster = TwoNodes(workers)  # already running before the run, as a hospital's cluster would be
        command += ["--workers", str(workers), "--ray", cluster.address]
        env["RAY_AUTH_MODE"] = "disabled"
    try:
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
        elapsed = time.perf_counter() - started
    finally:
        if cluster is not None:
            cluster.stop()
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{mode}: copilot qc exited {done.returncode}: {done.stderr[-2000:]}")
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return {"mode": mode, "records": len(rows), "errors": sum(r["status"] == "error" for r in rows),
            "findings": sum(len(r["findings"]) for r in rows), "seconds": round(elapsed, 2),
            "records_per_s": round(len(rows) / elapsed, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2, help="local worker processes = Ray actors (default 2)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {', '.join(MODES)}")
    parser.add_argument("--home", type=Path, help="instance with a knowledge snapshot (default: COPILOT_HOME)")
    parser.add_argument("--out", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    if "local-1" not in modes:
        modes.insert(0, "local-1")  # the reference every other output is compared with

    from copilot.config import Settings

    home = args.home or Settings().knowledge_dir
    report: dict = {"records": args.records, "workers": args.workers, "cpus": os.cpu_count(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp:
        source = Path(tmp) / "records.jsonl"
        write_inputs(source, args.records)
        reference = None
        for mode in modes:
            out = Path(tmp) / f"{mode}.jsonl"
            run = run_mode(mode, source, out, home, args.workers)
            data = out.read_bytes()
            if reference is None:
                reference = data
            run["identical"] = data == reference
            run["identical_sorted"] = sorted(data.splitlines()) == sorted(reference.splitlines())
            report["runs"].append(run)
            print(json.dumps(run), file=sys.stderr, flush=True)
    by_mode = {run["mode"]: run for run in report["runs"]}
    if "local-N" in by_mode:
        for mode in ("ray-1node", "ray-2nodes"):
            if mode in by_mode:
                by_mode[mode]["overhead_vs_local_N"] = round(
                    1 - by_mode[mode]["records_per_s"] / by_mode["local-N"]["records_per_s"], 3)
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    ok = all(run["identical"] if run["mode"] != "local-N" else run["identical_sorted"] for run in report["runs"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Batch QC on a Ray cluster: `copilot qc PATH --out FILE --ray [ADDRESS]`.

The driver (the `copilot qc` process) reads the inputs, skips what a resumed run already answered
and writes every result line itself, exactly as the local runner does; Ray only checks. Records
go to a pool of actors in chunks, each actor building its ``QCRunner`` (rules, knowledge graph)
once from the knowledge snapshot the driver loaded and put in the object store, so worker nodes
need the code but not the knowledge files. At most ``IN_FLIGHT`` chunks per actor are out at a
time (memory stays flat however large the batch), and results are taken back in submission order,
so the output is in input order and byte-identical to a one-worker local run.

A worker that dies mid-chunk (a killed process, a lost node) is restarted by Ray and the chunk
retried (checking is pure: a retry repeats nothing visible); a killed driver is resumed with
``--resume`` like a local run, since only lines it wrote count as done.

ADDRESS: ``auto`` (a cluster started with `ray start` on this machine), ``HOST:PORT`` of a head node,
``ray://HOST:10001`` (Ray Client), or ``local`` (a private single-node Ray started for this run).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from copilot.records.loaders import Loaded

log = logging.getLogger(__name__)

CHUNK = 64  # records per Ray task: large enough that scheduling costs little per record
IN_FLIGHT = 3  # chunks queued per actor: keeps each busy while the driver writes


class RayUnavailable(RuntimeError):
    """No Ray cluster at the address given (or Ray failed to start); the message says which."""


class _Checker:
    """One Ray actor: the QC runner built once, then chunks of records checked."""

    def __init__(self, snapshot, jurisdiction: str, check):
        from copilot.qc.runner import QCRunner

        self._runner = QCRunner(snapshot, jurisdiction=jurisdiction)
        self._check = check  # batch.check_record, passed in (by reference) so this module never imports batch

    def check(self, chunk: list[Loaded]) -> list[dict]:
        return [self._check(self._runner, loaded) for loaded in chunk]


def connect(address: str, num_cpus: int | None = None) -> None:
    """Join the Ray cluster at ``address`` (or start a private one for ``local``); a no-op when this
    process is already connected (a test's or an application's own ``ray.init``)."""
    import ray

    if ray.is_initialized():
        return
    try:
        if address == "local":
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayUnavailable(f"cannot connect to Ray at {address!r}: {str(exc).splitlines()[0] if str(exc) else exc}"
                             " (start one with `ray start --head`, or use --ray local)") from None


class RayPool:
    """Actors that check records; ``map`` yields (loaded, result) in input order."""

    def __init__(self, address: str, home: Path, jurisdiction: str, actors: int | None = None, chunk: int = CHUNK,
                 check=None):
        """``check(runner, loaded) -> result``: copilot.qc.batch.check_record, which run_batch passes."""
        import ray

        from copilot.qc.runner import QCRunner
        from knowledge.snapshot import Snapshot

        if chunk < 1:
            raise ValueError("chunk must be >= 1")
        self.chunk = chunk
        snapshot = Snapshot.current(Path(home))
        QCRunner(snapshot, jurisdiction=jurisdiction)  # bad rules fail here, with their message, not in an actor
        connect(address, num_cpus=actors)
        count = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        remote = ray.remote(num_cpus=1, max_restarts=3, max_task_retries=3)(_Checker)
        self._snapshot_ref = ray.put(snapshot)  # held: a restarted actor is built from it again
        if check is None:
            raise ValueError("RayPool needs check (copilot.qc.batch.check_record)")
        self.actors = [remote.remote(self._snapshot_ref, jurisdiction, check) for _ in range(count)]
        log.info("QC on Ray: %d actors", count)

    def map(self, items: Iterable[Loaded]) -> Iterator[tuple[Loaded, dict]]:
        import ray

        pending: deque = deque()
        limit = IN_FLIGHT * len(self.actors)
        source, turn = iter(items), 0
        while True:
            chunk = list(islice(source, self.chunk))
            if chunk:
                pending.append((chunk, self.actors[turn % len(self.actors)].check.remote(chunk)))
                turn += 1
            if pending and (len(pending) >= limit or not chunk):
                done_chunk, ref = pending.popleft()
                yield from zip(done_chunk, ray.get(ref))
            if not chunk and not pending:
                return

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors, self._snapshot_ref = [], None

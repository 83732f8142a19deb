"""Retirement: a local, recorded decision that an item must no longer be used.

Retirements are appended to ``COPILOT_HOME/knowledge/retirements.jsonl`` (who, when,
why) rather than edited into the shipped source files, so the hospital's decisions
survive an update of the sources and stay auditable. The snapshot is rebuilt at once.
"""

from __future__ import annotations

import getpass
import json
import os
import time
from pathlib import Path

from knowledge.build import SOURCES, build, read_retirements
from knowledge.snapshot import Snapshot


def retire(home: Path, item_id: str, reason: str, by: str | None = None, progress=lambda _: None) -> dict:
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("a retirement needs a reason")
    snapshot = Snapshot.current(home)
    sources = Path(snapshot.manifest.get("sources") or SOURCES)  # rebuild from what the snapshot was built from
    if not sources.is_dir():
        raise ValueError(f"the sources snapshot {snapshot.id} was built from are gone ({sources}); "
                         "rebuild with `copilot knowledge build` first")
    item = snapshot.items.get(item_id)
    if item is None:
        raise KeyError(f"no item {item_id!r} in snapshot {snapshot.id}")
    if item.status == "retired":
        raise ValueError(f"{item_id} is already retired ({item.retired_reason})")
    if any(r["id"] == item_id for r in read_retirements(home)):
        raise ValueError(f"{item_id} already has a retirement record")
    record = {"id": item_id, "version": item.version, "reason": reason,
              "by": by or getpass.getuser(),
              "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    log = home / "knowledge" / "retirements.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
        os.fsync(out.fileno())
    snapshot_path = build(home, sources=sources, with_index=snapshot.manifest.get("index", True), progress=progress)
    return {**record, "snapshot": snapshot_path.name}

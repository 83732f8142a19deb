"""The current knowledge snapshot, and the rule that only current items are ever served.

An item is servable on a given day when it is active, already effective, and not past
its review date. Expired and retired items stay in the snapshot for audit, but every
query path goes through ``servable`` and never returns them.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from knowledge.schema import MODELS, Item


class NoSnapshot(RuntimeError):
    pass


def servable(item: Item, today: date | None = None) -> bool:
    today = today or date.today()
    return item.status == "active" and item.effective <= today <= item.review_by


class Snapshot:
    def __init__(self, path: Path):
        self.path = Path(path)
        manifest_file = self.path / "manifest.json"
        if not manifest_file.is_file():
            raise NoSnapshot(f"{self.path} is not a complete knowledge snapshot")
        self.manifest = json.loads(manifest_file.read_text())
        self.id: str = self.manifest["id"]
        self.items: dict[str, Item] = {}
        self.origin: dict[str, str] = {}
        for line in (self.path / "items.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            self.origin[record["id"]] = record.pop("_origin", "")
            item = MODELS[record["kind"]].model_validate(record)
            self.items[item.id] = item

    @classmethod
    def current(cls, home: Path) -> "Snapshot":
        pointer = Path(home) / "knowledge" / "CURRENT"
        if not pointer.is_file():
            raise NoSnapshot(f"no knowledge snapshot under {home}; run `copilot knowledge build`")
        return cls(Path(home) / "knowledge" / "snapshots" / pointer.read_text().strip())

    def active(self, today: date | None = None, kind: str | None = None) -> list[Item]:
        return [i for i in self.items.values() if servable(i, today) and (kind is None or i.kind == kind)]

    def get(self, item_id: str, today: date | None = None) -> Item | None:
        """The item if it may be used today; None for unknown, retired or expired ones."""
        item = self.items.get(item_id)
        return item if item is not None and servable(item, today) else None

    def expired(self, today: date | None = None) -> list[Item]:
        today = today or date.today()
        return sorted((i for i in self.items.values() if i.status == "active" and i.review_by < today),
                      key=lambda i: (i.review_by, i.id))

    def due_within(self, days: int, today: date | None = None) -> list[Item]:
        today = today or date.today()
        return sorted((i for i in self.items.values()
                       if i.status == "active" and 0 <= (i.review_by - today).days <= days), key=lambda i: (i.review_by, i.id))


def citation(item: Item) -> dict:
    return {"id": item.id, "version": item.version, "source": item.source.model_dump(exclude_none=True)}

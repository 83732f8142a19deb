"""Read and validate the source files, then write a content-addressed snapshot.

A snapshot is written into a temporary folder and renamed into place, and ``CURRENT``
is switched only after that, so a failed or interrupted build never replaces the last
good snapshot. Its id (a hash of every item) is what audit entries cite.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import yaml
from pydantic import ValidationError

from knowledge.schema import MODELS, Item

SOURCES = Path(__file__).resolve().parent / "sources"
SNAPSHOT_FORMAT = 1


class BuildError(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in the knowledge sources:\n  " + "\n  ".join(problems[:50]))


class _LineLoader(yaml.SafeLoader):
    """Remembers the line of every mapping, so errors can point into the file."""


def _mapping_with_line(loader, node):
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


def _strip_lines(value):
    if isinstance(value, dict):
        return {k: _strip_lines(v) for k, v in value.items() if k != "__line__"}
    if isinstance(value, list):
        return [_strip_lines(v) for v in value]
    return value


@dataclass(frozen=True)
class Located:
    item: Item
    file: str
    line: int


def read_sources(sources: Path = SOURCES) -> tuple[list[Located], list[str]]:
    """Every item of every *.yaml file, validated; problems as 'file:line: id: reason'."""
    located: list[Located] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    files = sorted(Path(sources).glob("*.yaml"))
    if not files:
        return [], [f"{sources}: no *.yaml source files"]
    for path in files:
        name = path.name
        try:
            text = path.read_bytes().decode("utf-8")
            document = yaml.load(text, Loader=_LineLoader)
        except UnicodeDecodeError as exc:
            problems.append(f"{name}: not UTF-8 ({exc.reason} at byte {exc.start})")
            continue
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{name}:{mark.line + 1}" if mark else name
            problems.append(f"{where}: YAML error: {getattr(exc, 'problem', exc)}")
            continue
        if not isinstance(document, dict) or document.get("kind") not in MODELS or not isinstance(document.get("items"), list):
            problems.append(f"{name}: needs 'kind' (one of {', '.join(MODELS)}) and an 'items' list")
            continue
        kind, defaults = document["kind"], _strip_lines(document.get("defaults") or {})
        for raw in document["items"]:
            line = raw.get("__line__", 0) if isinstance(raw, dict) else 0
            if not isinstance(raw, dict):
                problems.append(f"{name}: an item is not a mapping: {raw!r:.60}")
                continue
            data = {**defaults, **_strip_lines(raw), "kind": kind}
            data["source"] = {**defaults.get("source", {}), **(_strip_lines(raw).get("source") or {})}
            item_id = data.get("id", "<no id>")
            try:
                item = MODELS[kind].model_validate(data)
            except ValidationError as exc:
                for error in exc.errors():
                    field = ".".join(str(p) for p in error["loc"]) or "item"
                    problems.append(f"{name}:{line}: {item_id}: {field}: {error['msg']}")
                continue
            if item.id in seen:
                problems.append(f"{name}:{line}: duplicate id {item.id} (first defined at {seen[item.id]})")
                continue
            seen[item.id] = f"{name}:{line}"
            located.append(Located(item, name, line))
    problems += check_references(located)
    return located, problems


def check_references(located: Iterable[Located]) -> list[str]:
    """Classes named by drugs, classes and interactions must exist."""
    located = list(located)
    classes = {entry.item.id.split(".", 1)[1] for entry in located if entry.item.kind == "drug_class"}
    problems = []

    def need(entry: Located, class_id: str | None, field: str):
        if class_id and class_id not in classes:
            problems.append(f"{entry.file}:{entry.line}: {entry.item.id}: {field}: unknown drug class {class_id!r}")

    for entry in located:
        item = entry.item
        if item.kind == "drug":
            for class_id in item.classes:
                need(entry, class_id, "classes")
            for class_id in item.allergy_groups:
                need(entry, class_id, "allergy_groups")
        elif item.kind == "drug_class":
            need(entry, item.parent, "parent")
            for cross in item.cross_reacts_with:
                need(entry, cross.class_, "cross_reacts_with")
        elif item.kind == "interaction":
            for side in ("a", "b"):
                for class_id in getattr(item, side).classes:
                    need(entry, class_id, f"{side}.classes")
    return problems


def apply_retirements(located: list[Located], retirements: list[dict]) -> tuple[list[Located], list[str]]:
    """Local decisions (``copilot knowledge retire``) override the shipped status."""
    by_id = {entry.item.id: index for index, entry in enumerate(located)}
    problems = []
    located = list(located)
    for record in retirements:
        index = by_id.get(record.get("id"))
        if index is None:
            problems.append(f"retirements: unknown item id {record.get('id')!r}")
            continue
        entry = located[index]
        item = entry.item.model_copy(update={"status": "retired", "retired_reason": record["reason"],
                                             "retired_by": record.get("by"), "retired_at": record.get("at")})
        located[index] = Located(item, entry.file, entry.line)
    return located, problems


def snapshot_id(items: list[Item], extra: dict) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": SNAPSHOT_FORMAT, **extra}, sort_keys=True).encode())
    for item in sorted(items, key=lambda i: i.id):
        digest.update(item.model_dump_json(by_alias=True).encode())
    return "kb-" + digest.hexdigest()[:16]


def read_retirements(home: Path) -> list[dict]:
    path = home / "knowledge" / "retirements.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build(home: Path, sources: Path = SOURCES, with_index: bool = True,
          progress: Callable[[str], None] = print) -> Path:
    """Validate everything, then write (or reuse) the snapshot and make it current."""
    from knowledge import retrieval

    located, problems = read_sources(sources)
    located, retirement_problems = apply_retirements(located, read_retirements(home))
    problems += retirement_problems
    if problems:
        raise BuildError(problems)
    items = [entry.item for entry in located]
    sid = snapshot_id(items, {"embedder": retrieval.EMBEDDER_NAME, "index": with_index,
                              "index_version": retrieval.INDEX_VERSION})
    root = home / "knowledge" / "snapshots"
    target = root / sid
    if (target / "manifest.json").is_file():
        progress(f"snapshot {sid} is up to date ({len(items)} items)")
    else:
        staging = root / f".{sid}.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with (staging / "items.jsonl").open("w", encoding="utf-8") as out:
            for entry in located:
                record = entry.item.model_dump(mode="json", by_alias=True)
                record["_origin"] = f"{entry.file}:{entry.line}"
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        if with_index:
            progress(f"indexing {len(items)} items for retrieval")
            retrieval.build_index(items, staging / "index", cache=home / "knowledge" / "embeddings")
        counts: dict[str, int] = {}
        for item in items:
            counts[item.kind] = counts.get(item.kind, 0) + 1
        manifest = {"id": sid, "format": SNAPSHOT_FORMAT, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "items": len(items), "kinds": counts, "retired": sum(i.status == "retired" for i in items),
                    "index": with_index, "embedder": retrieval.EMBEDDER_NAME, "sources": str(Path(sources).resolve()),
                    "files": sorted({entry.file for entry in located})}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        progress(f"snapshot {sid}: {len(items)} items ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")
    pointer = home / "knowledge" / "CURRENT"
    temporary = pointer.with_suffix(f".tmp-{os.getpid()}")
    temporary.write_text(sid + "\n")
    os.replace(temporary, pointer)
    return target

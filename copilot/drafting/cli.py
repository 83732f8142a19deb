"""`copilot ground --source TRANSCRIPT --draft DRAFT [--record RECORD.json] [--json]`: mark what a draft
(from any tool) says that its encounter does not support."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class CommandError(ValueError):
    """A file that cannot be read or used (exit status 2)."""


def _read(path: Path, what: str, limit: int) -> str:
    try:
        if path.stat().st_size > limit * 4:
            raise CommandError(f"{what} {path} is larger than {limit} characters")
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CommandError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise CommandError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def cmd_ground(args) -> int:
    from copilot import strict_json
    from copilot.drafting.grounding import MAX_DRAFT_CHARS, MAX_SOURCE_CHARS, ground
    from copilot.records.loaders import RecordError, record_from_json
    from knowledge.graph import KnowledgeGraph
    from knowledge.snapshot import Snapshot

    source = _read(args.source, "source", MAX_SOURCE_CHARS)
    draft = _read(args.draft, "draft", MAX_DRAFT_CHARS)
    record = None
    if args.record is not None:
        try:
            record = record_from_json(strict_json.loads(_read(args.record, "record", MAX_SOURCE_CHARS)), str(args.record))
        except (strict_json.JSONError, RecordError) as exc:
            raise CommandError(f"record {args.record}: {exc}") from None
    graph = KnowledgeGraph(Snapshot.current(args.settings.knowledge_dir))
    marks = ground(source, draft, record, graph)
    if args.json:
        print(json.dumps({"unsupported": marks}, ensure_ascii=False))
        return 0
    for mark in marks:
        print(f"{mark['start']}-{mark['end']}\t{mark['kind']}\t{mark['text']!r}\t{mark['reason']}")
    print(f"{len(marks)} unsupported span(s)", file=sys.stderr)
    return 0


def register(commands) -> None:
    from copilot.drafting.grounding import GroundingError
    from knowledge.snapshot import NoSnapshot

    ground = commands.add_parser(
        "ground", help="mark what a draft says that its transcript/record does not support",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check a clinical draft written by any tool against the encounter it was written from: "
                    "medications with their dose, frequency and duration, findings with their polarity "
                    "(\"no diabetes\"), sides, numbers, people's names, addresses, phones and dates, procedures, "
                    "the model talking about itself, and text cut off mid-sentence. English and Chinese.",
        epilog="output (--json): {\"unsupported\": [{\"start\", \"end\", \"text\", \"reason\", \"kind\"}]}, offsets in\n"
               "characters of the draft. kinds: medication, dose, frequency, duration, finding, procedure, side,\n"
               "number, name, address, phone, date, self_talk, truncated.\n"
               "exit status: 0 checked (whatever it found), 2 unreadable input or no knowledge snapshot.")
    ground.add_argument("--source", type=Path, required=True, metavar="TRANSCRIPT", help="the transcript (UTF-8 text)")
    ground.add_argument("--draft", type=Path, required=True, metavar="DRAFT", help="the draft note (UTF-8 text)")
    ground.add_argument("--record", type=Path, metavar="RECORD.json",
                        help="a project JSON record or FHIR Bundle whose facts count as support too")
    ground.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ground.set_defaults(func=cmd_ground, user_errors=(CommandError, GroundingError, NoSnapshot))

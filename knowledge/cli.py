"""`copilot knowledge build | check | search | show | retire`, registered with the `copilot` command.

This package knows nothing of ``copilot``: handlers read the instance directory from the
``args.settings`` the assembling command passes in (``.home``, where snapshots are built, and
``.knowledge_dir``, the instance whose snapshot is read).
"""

from __future__ import annotations

import json
import sys
from datetime import date


class KnowledgeCommandError(RuntimeError):
    """A user-facing problem with a knowledge command (unknown item, bad retirement)."""


def date_arg(text: str) -> date:
    import argparse

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _snapshot(args):
    from knowledge.snapshot import Snapshot

    return Snapshot.current(args.settings.knowledge_dir)


def cmd_build(args) -> int:
    from knowledge.build import BuildError, build

    try:
        path = build(args.settings.home, with_index=not args.no_index, progress=lambda line: print(line, flush=True))
    except BuildError as exc:
        raise KnowledgeCommandError(f"{exc}\nthe last good snapshot (if any) is still current") from None
    print(path.name)
    return 0


def cmd_check(args) -> int:
    snapshot = _snapshot(args)
    today = args.as_of
    expired = snapshot.expired(today)
    due = snapshot.due_within(args.warn_days, today)
    active = snapshot.active(today)
    retired = [i for i in snapshot.items.values() if i.status == "retired"]
    print(f"snapshot {snapshot.id}: {len(snapshot.items)} items, {len(active)} servable on {today or 'today'}, "
          f"{len(retired)} retired, {len(expired)} expired, {len(due)} due for review within {args.warn_days} days")
    for item in expired:
        print(f"EXPIRED  {item.id}  review_by {item.review_by}  ({snapshot.origin.get(item.id, '')})")
    for item in due:
        print(f"due      {item.id}  review_by {item.review_by}")
    if expired:
        print("expired items are not served; review them (update reviewed/review_by) or retire them", file=sys.stderr)
        return 1
    return 0


def cmd_search(args) -> int:
    from knowledge.retrieval import Retriever

    results = Retriever(_snapshot(args)).search(args.query, k=args.k, mode=args.mode)
    if args.json:
        print(json.dumps([{key: r[key] for key in ("id", "version", "source", "text", "score")} for r in results],
                         ensure_ascii=False, indent=2))
        return 0
    if not results:
        print("no results")
    for rank, r in enumerate(results, 1):
        source = r["source"]
        print(f"{rank}. [{r['id']} v{r['version']}] score {r['score']:.4f}")
        print(f"   {r['text'][:300]}")
        print(f"   source: {source['title']} - {source['issuer']}" + (f", {source['section']}" if source.get("section") else "")
              + f" <{source['url']}>")
    return 0


def cmd_retire(args) -> int:
    from knowledge.build import BuildError
    from knowledge.currency import retire

    try:
        record = retire(args.settings.home, args.id, args.reason, by=args.by or args.settings.operator)
    except (KeyError, ValueError, BuildError) as exc:
        raise KnowledgeCommandError(str(exc).strip("'\"")) from None
    print(f"retired {record['id']} by {record['by']} at {record['at']}: {record['reason']}")
    print(f"current snapshot: {record['snapshot']}")
    return 0


def cmd_show(args) -> int:
    from knowledge.snapshot import servable

    snapshot = _snapshot(args)
    item = snapshot.items.get(args.id)
    if item is None:
        raise KnowledgeCommandError(f"no item {args.id!r} in snapshot {snapshot.id}")
    record = item.model_dump(mode="json", by_alias=True, exclude_none=True)
    record["servable_today"] = servable(item)
    record["defined_at"] = snapshot.origin.get(item.id)
    print(json.dumps(record, ensure_ascii=False, indent=2))
    return 0


def register(commands) -> None:
    from knowledge.snapshot import NoSnapshot

    kb = commands.add_parser("knowledge", help="build, check and search the cited knowledge base",
                             description="The knowledge base: cited sources under knowledge/sources, validated "
                                         "into content-addressed snapshots under COPILOT_HOME/knowledge. Items past "
                                         "review_by or retired are never served.")
    kb.set_defaults(user_errors=(KnowledgeCommandError, NoSnapshot))
    actions = kb.add_subparsers(dest="action", metavar="ACTION")
    build = actions.add_parser("build", help="validate the sources and write the snapshot (with the retrieval index)",
                               description="Validate every source file (schema, unique ids, dates, references) "
                                           "and write a snapshot named by its content hash; a failed build "
                                           "leaves the last good snapshot current.")
    build.add_argument("--no-index", action="store_true", help="skip the retrieval index (faster; search unavailable)")
    build.set_defaults(func=cmd_build)
    check = actions.add_parser("check", help="list expired items; exit 1 if any active item is past review_by")
    check.add_argument("--as-of", type=date_arg, default=None, help="check as of this date (YYYY-MM-DD)")
    check.add_argument("--warn-days", type=int, default=30, help="also list items due within N days (default 30)")
    check.set_defaults(func=cmd_check)
    search = actions.add_parser("search", help="hybrid (dense + BM25) search over servable items")
    search.add_argument("query")
    search.add_argument("--k", type=int, default=5)
    search.add_argument("--mode", choices=["fused", "dense", "lexical"], default="fused")
    search.add_argument("--json", action="store_true", help='print [{"id", "version", "source", "text", "score"}]')
    search.set_defaults(func=cmd_search)
    retire = actions.add_parser("retire", help="retire an item (recorded with who, when and why) and rebuild")
    retire.add_argument("id")
    retire.add_argument("--reason", required=True)
    retire.add_argument("--by", default=None, help="who decided (default: the sudo caller, else the login name)")
    retire.set_defaults(func=cmd_retire)
    show = actions.add_parser("show", help="print one item with its provenance")
    show.add_argument("id")
    show.set_defaults(func=cmd_show)

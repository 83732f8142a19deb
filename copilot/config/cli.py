"""`copilot config show`: every COPILOT_* setting, its effective value and where it came from."""

from __future__ import annotations

import json


def cmd_show(args) -> int:
    from copilot.config import markdown_table

    if args.markdown:
        print(markdown_table())
        return 0
    rows = args.settings.effective()
    if args.json:
        print(json.dumps({r["name"]: r["value"] for r in rows}, ensure_ascii=False, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        marker = "*" if row["source"] == "environment" else " "
        print(f"{row['name']:<{width}} {marker} {row['value']}")
    print("\n* set in the environment; the rest are defaults. `copilot config show --markdown` documents each.")
    return 0


def register(commands) -> None:
    config = commands.add_parser("config", help="show the effective settings (COPILOT_* variables)",
                                 description="Settings come from COPILOT_* environment variables; every one has a "
                                             "default. Paths derive from COPILOT_HOME.")
    actions = config.add_subparsers(dest="action", metavar="ACTION")
    show = actions.add_parser("show", help="print every setting and its effective value (secrets masked)")
    form = show.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print {variable: value} as JSON")
    form.add_argument("--markdown", action="store_true", help="print the documentation table (as in the README)")
    show.set_defaults(func=cmd_show)

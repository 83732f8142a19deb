"""`copilot <command>`: the one entry point. It only assembles the commands packages register.

Each package with commands has a ``cli.py`` with ``register(commands)``, listed in the
``copilot.commands`` entry-point group of ``pyproject.toml``; a package installed beside this one
(``finetune``) adds its commands the same way, so ``copilot`` never imports it. The contract:

* ``register(commands)`` adds parsers to the ``copilot`` subparsers; a top-level command's
  actions use ``dest="action"``.
* A handler takes the parsed ``args`` (with ``args.settings``, the effective settings) and
  returns an exit status.
* User-facing errors are the package's own exceptions, declared on the parser with
  ``set_defaults(user_errors=(...))``; they become ``copilot CMD ACTION: error: MESSAGE`` and
  exit status 2 here, in one place.
"""

from __future__ import annotations

import argparse
import signal
import sys
from importlib.metadata import entry_points

import copilot.config  # noqa: F401  (sets the offline environment before heavy imports)
from copilot import __version__
from copilot.logs import configure as configure_logging

ENTRY_POINT_GROUP = "copilot.commands"
# The order commands appear in `copilot --help`; packages not named here follow, by name.
ORDER = ("model", "serve", "generate", "ground", "knowledge", "qc", "users", "audit", "config", "finetune")
LONG_RUNNING = {"serve"}  # a closed client socket must never end these (SIGPIPE stays ignored)

DESCRIPTION = """\
Private clinical copilot for hospital CPUs. All state lives under COPILOT_HOME
(default ./instance). Nothing is sent off this machine.

typical use:
  copilot model prepare            convert + export the embedded default (SmolLM2-135M) to OpenVINO INT8
  copilot model prepare --model /models/Qwen2.5-7B-Instruct --weight-format int8
  copilot serve --port 8000        serve the sidebar and APIs on localhost
  copilot knowledge build          validate the cited sources, build the snapshot and retrieval index
  copilot knowledge search "coumadin and ibuprofen" --json
  copilot qc records/ --out qc.jsonl --html qc.html
  copilot generate "Define sepsis." stream one answer in the terminal
  copilot config show              every COPILOT_* setting and its effective value
"""


def _rank(name: str) -> tuple[int, str]:
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="copilot", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"copilot {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda entry: _rank(entry.name))
    if not found:
        raise SystemExit("copilot: error: no commands are registered; reinstall the project (make setup)")
    for entry in found:
        entry.load()(commands)
    return parser


def _settings(prog: str):
    from pydantic import ValidationError

    from copilot.config import ENV_PREFIX, Settings

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{ENV_PREFIX}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise SystemExit(f"{prog}: error: invalid settings: {problems} (see `copilot config show --help`)") from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in LONG_RUNNING and hasattr(signal, "SIGPIPE") and argv is None:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `copilot ... | head` ends quietly
    configure_logging("INFO" if args.verbose else "WARNING")
    if getattr(args, "func", None) is None:  # a command without its action: show what it takes
        try:
            parser.parse_args([args.command, "--help"] if args.command else ["--help"])
        except SystemExit:
            pass
        return 2
    prog = " ".join(filter(None, ("copilot", args.command, getattr(args, "action", None))))
    args.settings = _settings(prog)
    try:
        return args.func(args)
    except tuple(getattr(args, "user_errors", ())) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""`copilot audit verify | export | show | head`: check, ship and read the audit log from a shell.

Exit status: 0 ok; 1 the log failed verification (or cannot be verified); 2 usage error or no log.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import re
import sys
from collections.abc import Iterator
from typing import TextIO

from copilot.audit.log import AuditError, AuditIntegrityError, AuditLog, NoAuditLog
from copilot.audit.shared import open_audit_log

HEAD_RE = re.compile(r"^(\d+):([0-9a-f]{64})$")
SHOW_COLUMNS = (("seq", 6), ("timestamp", 32), ("user", 14), ("role", 12), ("action", 10), ("patient", 16),
                ("outcome", 8), ("tokens", 7), ("ms", 9), ("model", 24), ("hash", 12))


def head_arg(text: str) -> tuple[int, str]:
    match = HEAD_RE.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a head (SEQ:HASH, as `copilot audit head` prints it): {text!r}")
    return int(match.group(1)), match.group(2)


def count_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a non-negative integer: {text!r}")
    return value


class AuditCommandError(RuntimeError):
    """A usage or set-up problem (exit status 2); a log that fails verification exits 1 instead."""


def _clear_failures(command):
    """A log damaged past reading (a truncated database file) is a FAILED line and exit status 1,
    never a traceback, whichever command meets it."""
    @functools.wraps(command)
    def run(args) -> int:
        try:
            return command(args)
        except AuditIntegrityError as exc:
            print(f"FAILED: {exc}")
            return 1
        except AuditError as exc:
            raise AuditCommandError(str(exc)) from None
    return run


def _open(args) -> AuditLog | int:
    """The instance's log, or exit status 1 after saying FAILED when its files contradict each other
    (or when a head kept elsewhere says a log existed where there is none)."""
    settings = args.settings
    try:
        return open_audit_log(settings, create=False)
    except NoAuditLog as exc:
        expected = getattr(args, "expect_head", None)
        if expected and expected[0] > 0:
            print(f"FAILED: {exc}, but the expected head records {expected[0]} entries: the log was deleted or "
                  "moved; restore it from backup")
            return 1
        raise AuditCommandError(f"{exc} (set COPILOT_HOME?)") from None
    except AuditIntegrityError as exc:
        print(f"FAILED: {exc}")
        return 1
    except AuditError as exc:
        raise AuditCommandError(str(exc)) from None


@_clear_failures
def cmd_verify(args) -> int:
    log = _open(args)
    if isinstance(log, int):
        return log
    result = log.verify(expect_head=args.expect_head)
    if not result.ok:
        where = f"entry {result.first_bad}: " if result.first_bad is not None else ""
        print(f"FAILED: {where}{result.reason}")
        print(f"{result.count} entries read from {log.path}", file=sys.stderr)
        return 1
    seq, digest = result.head
    print(f"ok: {result.count} entries, head {seq}:{digest}")
    return 0


@contextlib.contextmanager
def _output(target: str) -> Iterator[TextIO]:
    if target == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with open(target, "w", encoding="utf-8") as handle:
        yield handle


@_clear_failures
def cmd_export(args) -> int:
    log = _open(args)
    if isinstance(log, int):
        return log
    if args.bundle and args.format != "fhir":
        raise AuditCommandError("--bundle needs --format fhir")
    if not args.unverified:
        result = log.verify()
        if not result.ok:
            where = f"entry {result.first_bad}: " if result.first_bad is not None else ""
            print(f"copilot audit export: the log failed verification ({where}{result.reason}); "
                  "nothing exported (--unverified exports anyway)", file=sys.stderr)
            return 1
    entries = log.entries(after_seq=args.since)
    try:
        with _output(args.out) as out:
            if args.format == "jsonl":
                count = 0
                for entry in entries:
                    out.write(json.dumps(entry.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n")
                    count += 1
            else:
                from copilot.audit import fhir

                writer = fhir.write_bundle if args.bundle else fhir.write_ndjson
                count = writer(entries, out, observer=args.observer)
    except OSError as exc:
        raise AuditCommandError(str(exc)) from None
    kind = "FHIR Bundle" if args.bundle else {"fhir": "FHIR AuditEvent NDJSON", "jsonl": "JSONL"}[args.format]
    print(f"exported {count} entries after seq {args.since} as {kind} to "
          f"{'stdout' if args.out == '-' else args.out}", file=sys.stderr)
    return 0


def _cell(value, width: int) -> str:
    text = "-" if value is None or value == "" else str(value)
    return (text if len(text) <= width else text[:width - 1] + "~").ljust(width)


@_clear_failures
def cmd_show(args) -> int:
    log = _open(args)
    if isinstance(log, int):
        return log
    last_seq, _ = log.head()
    rows = list(log.entries(after_seq=max(0, last_seq - args.last)))
    print(" ".join(_cell(name, width) for name, width in SHOW_COLUMNS).rstrip())
    for e in rows:
        model = " ".join(filter(None, (e.model_id, e.model_version))) or None
        latency = None if e.latency_ms is None else f"{e.latency_ms:.1f}"
        values = (e.seq, e.timestamp, e.user, e.role, e.action, e.patient_ref, e.outcome, e.tokens, latency, model,
                  e.hash)
        print(" ".join(_cell(v, w) for v, (_, w) in zip(values, SHOW_COLUMNS)).rstrip())
    print(f"{len(rows)} of {last_seq} entries", file=sys.stderr)
    return 0


@_clear_failures
def cmd_head(args) -> int:
    log = _open(args)
    if isinstance(log, int):
        return log
    seq, digest = log.head()
    if args.json:
        print(json.dumps({"seq": seq, "hash": digest, "db": str(log.path)}))
    else:
        print(f"{seq}:{digest}")
    return 0


def _usage(parser: argparse.ArgumentParser):
    def show(args) -> int:
        parser.print_help(sys.stderr)
        return 2
    return show


def register(commands) -> None:
    """Add `audit` and its actions to the `copilot` command's subparsers."""
    audit = commands.add_parser(
        "audit", help="verify, export and read the tamper-evident audit log",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The audit log: one hash-chained entry per request that touches patient data "
                    "(COPILOT_HOME/audit/audit.db).",
        epilog="exit status: 0 ok, 1 verification failed, 2 usage error or no audit log.\n"
               "Keep `copilot audit head` output on another system: it is what proves later that\n"
               "nothing was rewritten (`copilot audit verify --expect-head SEQ:HASH`).")
    audit.set_defaults(func=_usage(audit), user_errors=(AuditCommandError,))
    actions = audit.add_subparsers(dest="action", metavar="ACTION")

    verify = actions.add_parser("verify", help="recompute the hash chain; exit 1 naming the first bad entry",
                                description="Recompute every entry's hash and link; detects edited, deleted, "
                                            "inserted and reordered entries and a truncated tail.")
    verify.add_argument("--expect-head", type=head_arg, metavar="SEQ:HASH",
                        help="a head kept elsewhere (from `copilot audit head`) that the log must still contain")
    verify.set_defaults(func=cmd_verify)

    export = actions.add_parser("export", help="write the entries as FHIR AuditEvents (NDJSON or Bundle) or JSONL",
                                description="Export entries. The log is verified first; a log that fails "
                                            "verification is not exported unless --unverified.")
    export.add_argument("--format", choices=["fhir", "jsonl"], required=True,
                        help="fhir: R4 AuditEvent resources, one per line (NDJSON); jsonl: the raw entries")
    export.add_argument("--bundle", action="store_true", help="with --format fhir: one Bundle (type collection)")
    export.add_argument("--out", default="-", metavar="FILE", help="output file (default -: stdout)")
    export.add_argument("--since", type=count_arg, default=0, metavar="SEQ", help="only entries after this seq")
    export.add_argument("--observer", default=None,
                        help="AuditEvent.source.observer display (default: 'Clinical Copilot on <hostname>')")
    export.add_argument("--unverified", action="store_true", help="export even if verification fails")
    export.set_defaults(func=cmd_export)

    show = actions.add_parser("show", help="print the newest entries as a table")
    show.add_argument("--last", type=count_arg, default=20, metavar="N", help="how many (default 20)")
    show.set_defaults(func=cmd_show)

    head = actions.add_parser("head", help="print the newest entry's SEQ:HASH, to keep on another system")
    head.add_argument("--json", action="store_true", help='print {"seq", "hash", "db"}')
    head.set_defaults(func=cmd_head)

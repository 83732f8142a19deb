"""`copilot qc PATH ...`: check one record or thousands, resumable, JSONL + HTML report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


ACTIONS = {"rules-report": "print each rule's precision from the QC office's reviews, and the rules to retune"}


class CommandError(ValueError):
    """A `copilot qc` command line that does not make sense (exit status 2)."""


def cmd_qc(args) -> int:
    """`copilot qc PATH ...` checks records; `copilot qc rules-report` (a bare action word) reports on the rules.
    A file or folder named like an action is checked when written as a path: `copilot qc ./rules-report`."""
    words = list(args.paths)
    if words[0] in ACTIONS:
        if len(words) > 1:
            raise CommandError(f"{words[0]} takes no PATH (to check a file of that name, write ./{words[0]})")
        return cmd_rules_report(args)
    if args.out is None:
        raise CommandError("--out is required when checking records (the JSONL results file)")
    from copilot.qc.batch import run_batch

    settings = args.settings
    model_pass = None
    if args.llm:
        from copilot.engine.pipeline import Engine
        from copilot.qc.llm import ModelReviewer

        model_pass = ModelReviewer(Engine(args.model_dir or settings.served_model_dir, device=settings.device)).review
    summary = run_batch([Path(p) for p in args.paths], args.out, settings.knowledge_dir, workers=args.workers, resume=args.resume,
                        overwrite=args.overwrite, encoding=args.encoding,
                        jurisdiction=args.jurisdiction or settings.qc_jurisdiction,
                        model_pass=model_pass, show_progress=not args.quiet, ray_address=args.ray)
    print(f"{summary.records - summary.errors} records checked, {summary.errors} not checked"
          + (f", {summary.skipped} already done before" if summary.skipped else "")
          + f"; {summary.findings} findings" + (": " if summary.findings else "")
          + ", ".join(f"{k} {v}" for k, v in sorted(summary.by_category.items())), file=sys.stderr)
    if args.html:
        from copilot.qc.report import write_report

        print(f"report: {write_report(args.out, args.html)}", file=sys.stderr)
    return 1 if summary.errors else 0


def cmd_rules_report(args) -> int:
    """Precision of every rule from the QC office's reviews (the instance database)."""
    import json

    from copilot.db import open_database
    from copilot.qc.office.store import OfficeStore

    settings = args.settings
    floor = settings.qc_precision_floor if args.floor is None else args.floor
    minimum = settings.qc_precision_min_reviews if args.min_reviews is None else args.min_reviews
    rows = OfficeStore(open_database(settings.database)).rule_precision(floor=floor, min_reviews=minimum)
    if args.json:
        print(json.dumps({"floor": floor, "min_reviews": minimum, "rules": rows}, ensure_ascii=False, indent=1))
        return 0
    if not rows:
        print("no findings in the QC office yet (file records with a batch job or POST /api/qc/office/records)")
        return 0
    width = max(len(r["rule_id"]) for r in rows)
    print(f"{'rule':<{width}}  findings  confirmed  dismissed  precision  status")
    for r in rows:
        precision = "-" if r["precision"] is None else f"{r['precision'] * 100:.0f}%"
        status = "RETUNE" if r["retune"] else ("too few reviews" if r["reviews"] < minimum else "ok")
        print(f"{r['rule_id']:<{width}}  {r['findings']:>8}  {r['confirmed']:>9}  {r['dismissed']:>9}  {precision:>9}  "
              f"{status}" + (f"  (dismissed: {'; '.join(x['reason'] for x in r['reasons'][:3])})"
                             if r["retune"] and r["reasons"] else ""))
    flagged = [r["rule_id"] for r in rows if r["retune"]]
    print(f"\n{len(flagged)} rule(s) below {floor * 100:.0f}% precision over at least {minimum} reviews"
          + (f": {', '.join(flagged)}" if flagged else ""))
    return 0


def register(commands) -> None:
    from copilot.engine.errors import EngineError
    from copilot.qc.batch import BatchError
    from copilot.qc.registry import RuleError
    from knowledge.snapshot import NoSnapshot

    qc = commands.add_parser(
        "qc", help="quality-control records (one or thousands), resumable, JSONL + HTML report; rules-report",
        usage="copilot qc PATH [PATH ...] --out FILE [options]\n       copilot qc rules-report [--floor F] "
              "[--min-reviews N] [--json]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check records for completeness, timeliness, consistency, medication safety, dangerous "
                    "abbreviations, coding, single-disease indicators and VTE prevention, against the current "
                    "knowledge snapshot; or, with the action word rules-report, print each rule's precision from "
                    "the QC office's reviews.",
        epilog="inputs: .txt notes (UTF-8 unless --encoding), project JSON records (copilot/records/record.schema.json),\n"
               "FHIR R4 Bundles (.json), .jsonl files of either (a line may wrap a record as {\"record\": {...}, ...},\n"
               "as benchmarks/data/qc_devset.jsonl does), and directories of any of these.\n"
               "output: one JSON line per record {record_id, status, error, findings}, flushed as it completes.\n"
               "actions: rules-report - precision = confirmed / (confirmed + dismissed) per rule, and the rules below\n"
               "  COPILOT_QC_PRECISION_FLOOR over COPILOT_QC_PRECISION_MIN_REVIEWS reviews. A bare action word is\n"
               "  the action; to check a file or folder with that name, write it as a path (./rules-report).\n"
               "exit status: 0 all records checked, 1 some records could not be checked, 2 usage or set-up error.")
    qc.add_argument("paths", nargs="+", metavar="PATH")  # kept as typed: "./rules-report" is a path
    qc.add_argument("--out", type=Path, help="JSONL results file (required when checking records)")
    qc.add_argument("--html", type=Path, help="also write an HTML report for the QC office")
    qc.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    qc.add_argument("--resume", action="store_true", help="continue an interrupted run: skip records already in --out")
    qc.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    qc.add_argument("--encoding", help="text encoding of the inputs when not UTF-8 (e.g. gb18030, latin-1)")
    qc.add_argument("--jurisdiction", choices=["CN", "US"], default=None,
                    help="whose documentation time limits apply (default: $COPILOT_QC_JURISDICTION, else CN: "
                         "病历书写基本规范)")
    qc.add_argument("--llm", action="store_true", help="add a model-generated consistency review (labelled origin=model)")
    qc.add_argument("--model-dir", type=Path, help="exported model for --llm (default: the served model)")
    qc.add_argument("--quiet", action="store_true", help="no progress bar")
    qc.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                    help="check on a Ray cluster: auto (the one `ray start` runs on this machine, the default), "
                         "HOST:PORT of its head, ray://HOST:10001, or local (a private Ray for this run); "
                         "--workers then sets the number of actors (default: one per CPU of the cluster). Same "
                         "output, in input order, and the same --resume as a local run")
    report = qc.add_argument_group("rules-report options")
    report.add_argument("--floor", type=float, help="precision below which a rule is flagged (default: "
                                                    "$COPILOT_QC_PRECISION_FLOOR)")
    report.add_argument("--min-reviews", type=int, help="reviews a rule needs before it can be flagged (default: "
                                                        "$COPILOT_QC_PRECISION_MIN_REVIEWS)")
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    from copilot.db import DatabaseError
    from copilot.qc.distributed import RayUnavailable

    qc.set_defaults(func=cmd_qc, user_errors=(BatchError, NoSnapshot, RuleError, EngineError, CommandError,
                                              DatabaseError, RayUnavailable))

"""`copilot qc PATH ...`: check one record or thousands, resumable, JSONL + HTML report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_qc(args) -> int:
    from copilot.qc.batch import run_batch

    settings = args.settings
    model_pass = None
    if args.llm:
        from copilot.engine.pipeline import Engine
        from copilot.qc.llm import ModelReviewer

        model_pass = ModelReviewer(Engine(args.model_dir or settings.served_model_dir, device=settings.device)).review
    summary = run_batch(args.paths, args.out, settings.knowledge_dir, workers=args.workers, resume=args.resume,
                        overwrite=args.overwrite, encoding=args.encoding,
                        jurisdiction=args.jurisdiction or settings.qc_jurisdiction,
                        model_pass=model_pass, show_progress=not args.quiet)
    print(f"{summary.records} records checked ({summary.skipped} already done), {summary.errors} not checked, "
          f"{summary.findings} findings: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.by_category.items())),
          file=sys.stderr)
    if args.html:
        from copilot.qc.report import write_report

        print(f"report: {write_report(args.out, args.html)}", file=sys.stderr)
    return 1 if summary.errors else 0


def register(commands) -> None:
    from copilot.engine.errors import EngineError
    from copilot.qc.batch import BatchError
    from copilot.qc.registry import RuleError
    from knowledge.snapshot import NoSnapshot

    qc = commands.add_parser(
        "qc", help="quality-control records (one or thousands), resumable, JSONL + HTML report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check records for completeness, timeliness, consistency, medication safety, dangerous "
                    "abbreviations and coding, against the current knowledge snapshot.",
        epilog="inputs: .txt notes (UTF-8 unless --encoding), project JSON records (copilot/records/record.schema.json),\n"
               "FHIR R4 Bundles (.json), .jsonl files of either, and directories of any of these.\n"
               "output: one JSON line per record {record_id, status, error, findings}, flushed as it completes.\n"
               "exit status: 0 all records checked, 1 some records could not be checked, 2 usage or set-up error.")
    qc.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    qc.add_argument("--out", type=Path, required=True, help="JSONL results file")
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
    qc.set_defaults(func=cmd_qc, user_errors=(BatchError, NoSnapshot, RuleError, EngineError))

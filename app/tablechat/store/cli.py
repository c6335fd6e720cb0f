"""``tablechat feedback``, ``tablechat examples`` and ``tablechat export-training``: the store
from the command line. Hooked into ``cli.py`` by :func:`add_parsers` and :data:`HANDLERS`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import RetryableSQLError
from . import FeedbackError, Store, StoreError, open_store, parse_date

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def _store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="URL",
                   help="SQLAlchemy URL of the store (default: TABLECHAT_STORE, else "
                   "tablechat-store.sqlite in the data directory)")


def add_parsers(sub: Any) -> None:
    """Add the store's subcommands to the main CLI's subparsers."""
    fb = sub.add_parser("feedback", help="list or purge people's feedback",
                        description="The votes, comments and corrections people gave.")
    fb_sub = fb.add_subparsers(dest="feedback_command", metavar="ACTION", required=True)
    purge = fb_sub.add_parser("purge", help="delete feedback older than a date")
    purge.add_argument("--before", required=True, metavar="DATE",
                       help="delete feedback given before this date (YYYY-MM-DD, UTC)")
    _store_option(purge)
    fb_list = fb_sub.add_parser("list", help="print feedback as JSON lines")
    fb_list.add_argument("--since", metavar="DATE", help="only feedback from this date on")
    fb_list.add_argument("--database", metavar="NAME", help="only this database's")
    _store_option(fb_list)

    ex = sub.add_parser("examples", help="add, list or remove verified examples",
                        description="Verified question→SQL pairs: the offline engine answers "
                        "a question that says what one says, with other values.")
    ex_sub = ex.add_subparsers(dest="examples_command", metavar="ACTION", required=True)
    add = ex_sub.add_parser("add", help="add the examples of a JSONL file",
                            description='One {"question": ..., "sql": ..., "database": ...} '
                            "object a line (data/demo/examples.jsonl).")
    add.add_argument("file", metavar="FILE.jsonl")
    add.add_argument("--database", metavar="NAME",
                     help="database name for records that give none (e.g. demo)")
    add.add_argument("--db", dest="check_db", metavar="DB",
                     help="check every SQL with the guard of this database (a DuckDB file "
                     "or SQLAlchemy URL) first; its name is the examples' database")
    _store_option(add)
    ls = ex_sub.add_parser("list", help="list verified examples")
    ls.add_argument("--database", metavar="NAME", help="only this database's")
    ls.add_argument("--json", action="store_true", help="one JSON object a line")
    _store_option(ls)
    rm = ex_sub.add_parser("remove", help="remove examples by id")
    rm.add_argument("ids", nargs="+", type=int, metavar="ID")
    _store_option(rm)

    tr = sub.add_parser("export-training", help="write training data (SFT or DPO) from "
                        "feedback", description="Training data from people's votes and "
                        "corrections, in the formats TRL and axolotl read (docs/feedback.md).")
    tr.add_argument("out", metavar="OUT.jsonl")
    tr.add_argument("--format", required=True, choices=("sft", "dpo", "dpo-chatml"),
                    help="sft: messages records; dpo: TRL conversational prompt/chosen/"
                    "rejected; dpo-chatml: axolotl chatml.intel (system/question/chosen/"
                    "rejected strings)")
    tr.add_argument("--since", metavar="DATE", help="only feedback from this date on")
    tr.add_argument("--database", metavar="NAME", help="only this database's feedback")
    _store_option(tr)


def _open(args: argparse.Namespace) -> Store:
    return open_store(args.store) if args.store else open_store()


def cmd_feedback(args: argparse.Namespace) -> int:
    """``tablechat feedback purge|list``."""
    store = _open(args)
    if args.feedback_command == "purge":
        before = parse_date(args.before)
        gone = store.purge_feedback(before)
        print(f"deleted {gone} feedback records given before {before:%Y-%m-%d %H:%M} UTC",
              file=sys.stderr)
        return EXIT_OK
    since = parse_date(args.since) if args.since else None
    for fb in store.feedback(since=since, database=args.database):
        print(json.dumps({"id": fb.id, "created_at": fb.created_at.isoformat(),
                          "database": fb.database, "question": fb.question, "good": fb.good,
                          "sql": fb.sql, "corrected_sql": fb.corrected_sql,
                          "comment": fb.comment, "engine": fb.engine, "model": fb.model,
                          "principal": fb.principal}, ensure_ascii=False))
    return EXIT_OK


def cmd_examples(args: argparse.Namespace) -> int:
    """``tablechat examples add|list|remove``."""
    from ..memory.files import read_examples

    store = _open(args)
    if args.examples_command == "add":
        database = args.database
        tc = None
        if args.check_db:
            from ..api import connect

            tc = connect(args.check_db, llm_url="", memory=False)
            database = tc.database.name
        try:
            examples = read_examples(args.file, database=database, verified_by="cli")
            if tc is not None:
                for e in examples:
                    e.database = tc.database.name
                    try:
                        tc.check_sql(e.sql)
                    except RetryableSQLError as exc:
                        raise FeedbackError(f"{args.file}: {e.question!r}: {exc}") from None
        finally:
            if tc is not None:
                tc.close()
        ids = store.add_examples(examples)
        print(f"added {len(ids)} examples", file=sys.stderr)
        return EXIT_OK
    if args.examples_command == "remove":
        gone = store.remove_examples(args.ids)
        print(f"removed {gone} of {len(args.ids)} examples", file=sys.stderr)
        return EXIT_OK if gone == len(args.ids) else EXIT_ERROR
    for e in store.examples(database=args.database):
        if args.json:
            print(json.dumps({"id": e.id, "database": e.database, "question": e.question,
                              "sql": e.sql, "source": e.source, "verified_by": e.verified_by,
                              "created_at": e.created_at.isoformat()}, ensure_ascii=False))
        else:
            print(f"{e.id:>6}  {e.database:<12} {e.question}\n        {e.sql}")
    return EXIT_OK


def cmd_export_training(args: argparse.Namespace) -> int:
    """``tablechat export-training``."""
    from ..training import export_training

    since = parse_date(args.since) if args.since else None
    count = export_training(_open(args), args.format, args.out, since=since,
                            database=args.database)
    print(f"wrote {count} {args.format} records to {args.out}", file=sys.stderr)
    return EXIT_OK


HANDLERS = {"feedback": cmd_feedback, "examples": cmd_examples,
            "export-training": cmd_export_training}
__all__ = ["HANDLERS", "StoreError", "add_parsers"]

"""``tablechat eval --memory FILE|store|loo``: accuracy with verified examples as memory,
beside the same run without them.

- ``FILE``: examples from a JSONL file (``db_id``/``database``, ``question``, ``sql``);
- ``store``: the examples in the store (``TABLECHAT_STORE``), by database name = ``db_id``;
- ``loo``: the dataset's own gold pairs, each question's own pair and its exact duplicates
  (same words, same database) left out when it is asked: an honest figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..core import TableChat
from ..memory import Memory, MemoryLike, StoreMemory
from ..memory.files import read_examples
from ..store import Example, FeedbackError, StoreError, open_store
from .datasets import Dataset
from .harness import EvalError, EvalOptions, run_eval
from .report import Progress, format_summary, summarize, summary_json

Provider = Callable[[str], MemoryLike | None]


def add_memory_argument(p: argparse.ArgumentParser) -> None:
    """The ``--memory`` option of ``tablechat eval``."""
    p.add_argument("--memory", metavar="FILE|store|loo",
                   help="also run with verified examples as the offline engine's memory and "
                   "report both: a JSONL FILE of examples, the store's examples, or loo (the "
                   "dataset's own gold pairs, leaving out each question's own)")


def memory_provider(spec: str, dataset: Dataset, *, min_score: float | None = None
                    ) -> tuple[Provider, int]:
    """(db_id → its memory, number of examples) for ``--memory spec``."""
    kwargs: dict[str, Any] = {} if min_score is None else {"min_score": min_score}
    if spec == "store":
        store = open_store()
        count = len(store.examples())
        return (lambda db_id: StoreMemory(store, db_id, **kwargs)), count
    if spec == "loo":
        examples = [Example(q.db_id, q.question, q.gold_sql, source="dataset")
                    for q in dataset.questions if q.gold_sql.strip()]
        loo = True
    else:
        examples = read_examples(spec)
        loo = False
    by_db: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        by_db[e.database].append(e)
    memories = {db: Memory(items, exclude_same_question=loo, **kwargs)
                for db, items in by_db.items()}
    return memories.get, len(examples)


def attach(tc: TableChat, memory: MemoryLike | None) -> None:
    """Give ``tc``'s offline engine this memory."""
    offline = getattr(tc, "_offline", None)  # the engine connect() installed
    if offline is not None and hasattr(offline, "memory"):
        offline.memory = memory


def cmd_eval_memory(args: argparse.Namespace, dataset: Dataset, options: EvalOptions) -> int:
    """Run the dataset without and with memory; print both summaries (JSON: the run with
    memory, the one without under ``without_memory``)."""
    try:
        provider, count = memory_provider(args.memory, dataset)
    except (FeedbackError, StoreError) as exc:
        print(f"tablechat eval: --memory: {exc}", file=sys.stderr)
        return 2
    summaries = []
    for label, opts in (("without memory", options),
                        ("with memory", replace(options, memory=provider))):
        progress = None if args.no_progress else Progress(len(dataset.questions), sys.stderr,
                                                          label=label)
        try:
            run = run_eval(dataset, opts, progress=progress.update if progress else None)
        except EvalError as exc:
            print(f"tablechat eval: {exc}", file=sys.stderr)
            return 1
        finally:
            if progress is not None:
                progress.close()
        summaries.append(summarize(run))
    without, with_memory = summaries
    human = (f"-- without memory --\n{format_summary(without)}\n\n-- with memory "
             f"({args.memory}: {count} examples) --\n{format_summary(with_memory)}")
    if args.json:
        print(human, file=sys.stderr)
        out = summary_json(with_memory)
        out["memory"] = {"source": args.memory, "examples": count}
        out["without_memory"] = {k: v for k, v in summary_json(without).items()
                                 if k not in ("by_db", "by_kind")}
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(human)
    return 0

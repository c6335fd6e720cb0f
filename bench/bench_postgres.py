"""The demo questions offline on DuckDB and on PostgreSQL (issue 15): same results, and the time
per question on each.

A real PostgreSQL from Debian's packages (tests/support/postgres.py) holds a copy of the demo
data, read by the read-only role through SQLAlchemy and psycopg. Every question of
``data/questions/demo.jsonl`` is asked of the offline engine on both databases, turn by turn
(so that a load coming and going on the shared machine weighs on both alike), once to warm up
and once timed. A match: both answered and the rows are equal (numbers rounded to cents, rows
in a stable order), or both declined.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench import Row, p50

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "data" / "questions" / "demo.jsonl"


def _rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    def norm(v: Any) -> Any:
        if isinstance(v, int | float) or type(v).__name__ == "Decimal":
            return round(float(v), 2)
        return str(v)

    return sorted(tuple(norm(v) for v in row) for row in rows)


def run() -> list[Row]:
    """Rows: matching questions (of those asked), and the p50 time per question on each."""
    import tablechat
    from tablechat._resources import resource_path
    from tablechat.demo import ensure_demo
    from tests.support.postgres import load_demo, postgres_server

    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines()
                 if line.strip()]
    semantic = str(resource_path("data/demo/semantic.yaml"))
    with postgres_server() as server:
        load_demo(server, ensure_demo())
        duck = tablechat.connect(ensure_demo(), llm_url="", memory=False)
        post = tablechat.connect(server.url(), llm_url="", memory=False,
                                 semantic_layer=semantic, query_timeout=60)
        try:
            times: dict[str, list[float]] = {"duckdb": [], "postgres": []}
            matches = answered = 0
            for rep in range(2):  # the first pass warms caches and indexes up
                for question in questions:
                    answers = {}
                    for name, chat in (("duckdb", duck), ("postgres", post)):
                        start = time.perf_counter()
                        answers[name] = chat.ask(question)
                        if rep:
                            times[name].append((time.perf_counter() - start) * 1000)
                    if not rep:
                        continue
                    d, p = answers["duckdb"], answers["postgres"]
                    d_ok, p_ok = d.error is None and d.sql, p.error is None and p.sql
                    answered += bool(d_ok)
                    if (d_ok and p_ok and _rows(d.rows) == _rows(p.rows)) \
                            or (not d_ok and not p_ok):
                        matches += 1
        finally:
            duck.close()
            post.close()
    n = len(questions)
    return [
        Row(f"postgres: demo questions with DuckDB's result (of {n}; {answered} answered)",
            matches, "q", goal=f"= {n}", ok=matches == n),
        Row("postgres: offline question p50 (DuckDB beside)", p50(times["postgres"]), "ms",
            theirs=p50(times["duckdb"]), alternative="same question on DuckDB"),
    ]


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(run())

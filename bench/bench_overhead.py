"""Non-LLM overhead per question with a zero-latency scripted model: tablechat vs LangChain's
classic path (``create_sql_query_chain`` + community ``SQLDatabase`` + ``QuerySQLDatabaseTool``
+ an answer prompt), on the same database (a SQLite copy of the demo, which both can open),
question and scripted model. Also tablechat on the native DuckDB demo.

The three take turns question by question, so that a load coming and going on a shared machine
weighs on all of them alike (run one after the other, the classic figure alone moved 9-21 ms
between runs here)."""

from __future__ import annotations

import sqlite3
import tempfile
import time
import warnings
from operator import itemgetter
from pathlib import Path
from typing import Any

from bench import Row, p50, percentile

# A cheap query, so the figures measure the frameworks rather than the database engine.
QUESTION = "How many stores does each region have?"
SQL = (
    "SELECT r.name AS region, count(*) AS stores FROM stores s "
    "JOIN regions r ON r.id = s.region_id GROUP BY r.name ORDER BY stores DESC"
)
ANSWER = "Europe has the most stores."
N = 60


def _sqlite_copy(target: Path) -> Path:
    import duckdb

    from tablechat.demo import ensure_demo

    src = duckdb.connect(str(ensure_demo()), read_only=True)
    dst = sqlite3.connect(target)
    for (table,) in src.execute("SELECT table_name FROM duckdb_tables()").fetchall():
        cols = src.execute(f'DESCRIBE "{table}"').fetchall()
        ddl = ", ".join(f'"{c[0]}" {"REAL" if "DECIMAL" in c[1] else c[1]}' for c in cols)
        dst.execute(f'CREATE TABLE "{table}" ({ddl})')
        rows = src.execute(f'SELECT * FROM "{table}"').fetchall()
        marks = ", ".join("?" * len(cols))
        dst.executemany(
            f'INSERT INTO "{table}" VALUES ({marks})',
            [tuple(float(v) if hasattr(v, "as_tuple") else v for v in r) for r in rows],
        )
    dst.commit()
    dst.close()
    src.close()
    return target


def _model() -> Any:
    from langchain_core.language_models import FakeListChatModel

    return FakeListChatModel(responses=[SQL, ANSWER])  # cycles: SQL, answer, SQL, ...


def _ours(database: str) -> tuple[Any, Any]:
    """One question through tablechat, and what to close afterwards."""
    import tablechat

    tc = tablechat.connect(database, llm=_model())

    def ask() -> None:
        answer = tc.ask(QUESTION)
        assert answer.error is None and len(answer.rows) == 5, answer.error

    return ask, tc.close


def _classic(sqlite_path: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langchain_classic.chains import create_sql_query_chain
        from langchain_community.tools.sql_database.tool import QuerySQLDatabaseTool
        from langchain_community.utilities import SQLDatabase
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import PromptTemplate
    from langchain_core.runnables import RunnablePassthrough

    db = SQLDatabase.from_uri(f"sqlite:///{sqlite_path}")
    model = _model()
    write_query = create_sql_query_chain(model, db)
    execute_query = QuerySQLDatabaseTool(db=db)
    answer_prompt = PromptTemplate.from_template(
        "Given the following user question, corresponding SQL query, and SQL result, answer "
        "the user question.\n\nQuestion: {question}\nSQL Query: {query}\nSQL Result: {result}\n"
        "Answer: "
    )
    chain = (
        RunnablePassthrough.assign(query=write_query).assign(
            result=itemgetter("query") | execute_query
        )
        | answer_prompt
        | model
        | StrOutputParser()
    )

    def ask() -> None:
        assert chain.invoke({"question": QUESTION}) == ANSWER

    return ask


def _interleaved(*fns: Any) -> list[list[float]]:
    """Time each function N times, taking turns, so that both see the same machine (a load
    that comes and goes on a shared machine would otherwise favour whichever ran in a lull)."""
    for fn in fns:  # warm-up: schema snapshots, imports, caches
        fn()
        fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(N):
        for fn, out in zip(fns, samples, strict=True):
            start = time.perf_counter()
            fn()
            out.append((time.perf_counter() - start) * 1000)
    return samples


def run() -> list[Row]:
    from tablechat.demo import ensure_demo

    with tempfile.TemporaryDirectory() as tmp:
        sqlite_path = _sqlite_copy(Path(tmp) / "demo.sqlite")
        ours_sqlite, close_sqlite = _ours(f"sqlite:///{sqlite_path}")
        ours_duck, close_duck = _ours(str(ensure_demo()))
        try:
            mine, theirs, duck = _interleaved(ours_sqlite, _classic(sqlite_path), ours_duck)
        finally:
            close_sqlite()
            close_duck()
    alt = "LangChain classic chain"
    o50, t50 = p50(mine), p50(theirs)
    return [
        Row(
            "overhead per question (SQLite copy), p50",
            o50,
            "ms",
            t50,
            alt,
            "< 1/4 of classic",
            ok=o50 < t50 / 4,
        ),
        Row(
            "overhead per question (SQLite copy), p95",
            percentile(mine, 95),
            "ms",
            percentile(theirs, 95),
            alt,
        ),
        Row("overhead per question (DuckDB demo), p50", p50(duck), "ms", t50, alt + " (SQLite)"),
        Row("overhead per question (DuckDB demo), p95", percentile(duck, 95), "ms"),
    ]

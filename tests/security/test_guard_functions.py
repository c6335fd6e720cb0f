"""Issue 11, class 5: the guard's function policy is an allow-list, in every position.

On main a deny-list let ``LATERAL json_execute_serialized_sql(json_serialize_sql('…'))``
return every setting, ``LATERAL duckdb_databases()`` the database path, and ``duckdb_memory()``,
``pragma_platform()``, ``query(…)`` and ``truncate_duckdb_logs()`` run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import sqlglot
from sqlglot import exp

import tablechat
from tablechat import InvalidSQLError, TableChat, UnsafeSQLError
from tablechat.sql import functions
from tablechat.sql.functions import FunctionPolicy
from tablechat.sql.guard import SQLGuard

ROOT = Path(__file__).resolve().parents[2]
# ../shared/eval from a checkout; a git worktree sits one level deeper
SPIDER = next((p / "shared" / "eval" / "spider_dev" for p in (ROOT.parent, ROOT.parent.parent)
               if (p / "shared" / "eval" / "spider_dev").exists()), ROOT / "missing")
SCHEMA = {
    "regions": {"id": "INTEGER", "name": "VARCHAR"},
    "orders": {"id": "INTEGER", "region_id": "INTEGER", "order_date": "DATE", "total": "DOUBLE"},
}

# What outside testing ran through the guard on main (issue 11, class 5), and kin.
ATTACKS = [
    "SELECT * FROM LATERAL json_execute_serialized_sql(json_serialize_sql("
    "'SELECT name, value FROM duckdb_settings()'))",
    "SELECT * FROM LATERAL duckdb_databases()",
    "SELECT * FROM duckdb_memory()",
    "SELECT * FROM pragma_platform()",
    "SELECT * FROM query('SELECT 42')",
    "SELECT * FROM query_table('regions')",
    "SELECT * FROM truncate_duckdb_logs()",
    "SELECT * FROM duckdb_logs()",
    "SELECT * FROM duckdb_secrets()",
    "SELECT * FROM which_secret('s3://x', 's3')",
    "SELECT current_setting('temp_directory')",
    "SELECT getenv('HOME')",
    "SELECT json_serialize_sql('SELECT 1')",
    "SELECT * FROM regions, LATERAL duckdb_settings()",
    "SELECT * FROM regions CROSS JOIN LATERAL pragma_version()",
    "SELECT * FROM regions JOIN duckdb_tables() t ON t.table_name = regions.name",
    "SELECT (SELECT count(*) FROM duckdb_extensions()) AS n",
    "SELECT name FROM regions WHERE name IN (SELECT name FROM duckdb_settings())",
    "WITH s AS (SELECT * FROM duckdb_temporary_files()) SELECT * FROM s",
    "WITH s AS (SELECT current_setting('memory_limit') AS v) SELECT v FROM s",
    "SELECT id FROM regions UNION ALL SELECT 1 FROM pragma_database_size()",
    "SELECT row_number() OVER (PARTITION BY current_setting('threads')) FROM regions",
    "SELECT max(length(getenv('PATH'))) FROM regions",
    "SELECT id FROM regions ORDER BY getenv('HOME')",
    "SELECT id FROM regions GROUP BY id HAVING count(*) > length(current_setting('threads'))",
    "SELECT nextval('seq')",
    "SELECT setseed(0.5)",
    "SELECT write_log('x')",
    "SELECT version()",
    "SELECT some_udf_nobody_listed(id) FROM regions",
]


@pytest.fixture()
def guard() -> SQLGuard:
    return SQLGuard(SCHEMA, dialect="duckdb", max_rows=100)


@pytest.fixture(scope="module")
def tc(demo_db: Path) -> Iterator[TableChat]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TABLECHAT_LLM_URL", raising=False)
        chat = tablechat.connect(demo_db)
    yield chat
    chat.close()


def _called(sql: str) -> str:
    """The first function the attack calls that the allow-list lacks (for the message check)."""
    names = functions.allowed_names("duckdb")
    for node in sqlglot.parse_one(sql, read="duckdb").find_all(exp.Func):
        name = functions.function_name(node)
        if isinstance(node, exp.Anonymous) and name not in names:
            return name
    return ""


@pytest.mark.parametrize("sql", ATTACKS)
def test_outside_attacks_are_refused_with_the_function_named(guard: SQLGuard, sql: str) -> None:
    with pytest.raises(UnsafeSQLError, match="not allowed") as info:
        guard.check(sql)
    assert "function" in str(info.value)
    name = _called(sql)
    if name:
        assert f"{name}()" in str(info.value)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT * FROM LATERAL json_execute_serialized_sql('x')", "SQL held in a string"),
        ("SELECT * FROM duckdb_settings()", "DuckDB's meta functions"),
        ("SELECT * FROM pragma_platform()", "PRAGMA"),
        ("SELECT current_setting('threads')", "settings"),
        ("SELECT * FROM truncate_duckdb_logs()", "logs"),
        ("SELECT * FROM read_text('/etc/passwd')", "reads files"),
        ("SELECT made_up(1)", "only known read-only functions"),
    ],
)
def test_the_refusal_says_why(guard: SQLGuard, sql: str, reason: str) -> None:
    with pytest.raises(UnsafeSQLError, match=reason):
        guard.check(sql)


def test_attacks_are_refused_before_the_sandbox_on_the_real_database(tc: TableChat) -> None:
    # on main this returned every setting of the sandboxed connection
    for sql in ATTACKS[:5]:
        with pytest.raises(UnsafeSQLError):
            tc.run_sql(sql)


# --- every table function DuckDB ships is refused in FROM but the few listed ----------------
def _duckdb_functions(kind: str) -> list[str]:
    con = duckdb.connect()
    try:
        rows = con.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type = ?",
            [kind],
        ).fetchall()
    finally:
        con.close()
    return sorted(r[0] for r in rows)


def test_no_duckdb_table_function_passes_but_the_listed_few(guard: SQLGuard) -> None:
    allowed = functions.table_names("duckdb")
    passed = []
    for name in _duckdb_functions("table") + _duckdb_functions("table_macro"):
        for sql in (f"SELECT * FROM {name}()", f"SELECT * FROM regions, LATERAL {name}(1)"):
            try:
                guard.check(sql)
            except (UnsafeSQLError, InvalidSQLError):
                continue
            passed.append(name)
    assert set(passed) <= allowed, sorted(set(passed) - allowed)


def test_no_meta_name_is_on_the_allow_list() -> None:
    for dialect in (*functions.DIALECTS, "mysql"):
        names = functions.allowed_names(dialect)
        assert not [n for n in names if functions.denial_reason(n)], dialect
        assert not [n for n in names if n.startswith(("duckdb_", "pragma_", "read_"))]


def test_duckdb_names_on_the_list_are_real_duckdb_functions() -> None:
    # catches typos: a misspelt name would stay allowed and useless
    known = {n.lower() for kind in ("scalar", "aggregate", "window", "macro", "table")
             for n in _duckdb_functions(kind)}
    listed = set()
    for kind in (functions.SCALAR, functions.AGGREGATE, functions.TABLE):
        listed |= kind.get("duckdb", frozenset())
    assert sorted(listed - known) == []


@pytest.mark.parametrize("dialect", functions.DIALECTS)
def test_every_allowed_name_passes_however_sqlglot_parses_it(dialect: str) -> None:
    # sqlglot turns many names into typed classes (strftime → TimeToStr): each must be allowed
    policy = FunctionPolicy(dialect, max_series_rows=10)
    refused = []
    for name in sorted(functions.allowed_names(dialect) - {"range", "generate_series"}):
        for args in ("x", "x, 1", "x, 1, 2", ""):
            try:
                tree = sqlglot.parse_one(f"SELECT {name}({args})", read=dialect)
            except sqlglot.errors.ParseError:
                continue
            refused += [(name, type(f).__name__) for f in tree.find_all(exp.Func)
                        if policy.refusal(f) is not None]
            break
    assert refused == []


# --- what the project itself writes must pass --------------------------------------------------
def _gold(path: Path) -> list[str]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [r["gold_sql"] for r in rows if r.get("gold_sql")]


def _refused_functions(sqls: list[str]) -> set[str]:
    policy = FunctionPolicy("duckdb", max_series_rows=1_000_000)
    refused = set()
    for sql in sqls:
        for node in sqlglot.parse_one(sql, read="duckdb").find_all(exp.Func):
            if policy.refusal(node) is not None:
                refused.add(functions.function_name(node))
    return refused


def test_demo_gold_sql_uses_only_allowed_functions() -> None:
    assert _refused_functions(_gold(ROOT / "data" / "questions" / "demo.jsonl")) == set()


@pytest.mark.skipif(not SPIDER.exists(), reason="../shared/eval/spider_dev is not here")
def test_spider_gold_sql_uses_only_allowed_functions() -> None:
    assert _refused_functions(_gold(SPIDER / "questions.jsonl")) == set()


def test_offline_answers_pass_the_guard(tc: TableChat, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    questions = [json.loads(line)["question"] for line in
                 (ROOT / "data" / "questions" / "demo.jsonl").read_text().splitlines() if line]
    answered = [a for a in (tc.ask(q) for q in questions[:40]) if a.sql]
    assert len(answered) >= 30
    assert not [a.error for a in answered if a.error]


def test_typed_functions_the_offline_engine_builds_pass_in_every_dialect() -> None:
    built = [exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max, exp.Lower, exp.Year, exp.Month,
             exp.Day, exp.Quarter, exp.TimestampTrunc]
    for dialect in functions.DIALECTS:
        names = functions.allowed_names(dialect)
        assert [c.__name__ for c in built if not functions.typed_allowed(c, names)] == []


# --- syntax sqlglot models as functions, in every position --------------------------------------
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id::VARCHAR, CAST(total AS INTEGER), TRY_CAST(total AS INTEGER) FROM orders",
        "SELECT CASE WHEN total > 1 THEN 'a' ELSE 'b' END, coalesce(total, 0), "
        "nullif(id, 0) FROM orders",
        "SELECT extract(year FROM order_date), date_trunc('month', order_date), "
        "strftime(order_date, '%Y-%m'), order_date - INTERVAL 3 DAY FROM orders",
        "SELECT row_number() OVER (ORDER BY id), lag(total) OVER (ORDER BY order_date), "
        "sum(total) FILTER (WHERE total > 1) FROM orders",
        "SELECT median(total), quantile_cont(total, 0.5), arg_max(id, total), "
        "string_agg(CAST(id AS VARCHAR), ',' ORDER BY id) FROM orders",
        "SELECT name FROM regions r WHERE EXISTS (SELECT 1 FROM orders o WHERE o.region_id = r.id)",
        "SELECT [1, 2][1] AS a, {'k': 1} AS s, list_transform([1, 2], x -> x + 1) AS l",
        "SELECT * FROM unnest([1, 2, 3]) AS t(x)",
        "SELECT r.name, s.x FROM regions r, LATERAL (SELECT upper(r.name) AS x) s",
        "WITH m AS (SELECT date_trunc('month', order_date) AS m, sum(total) AS t FROM orders "
        "GROUP BY 1) SELECT m, t, avg(t) OVER (ORDER BY m ROWS 2 PRECEDING) FROM m",
        "SELECT current_date, now(), random() AS r",
    ],
)
def test_ordinary_functions_pass_in_every_position(guard: SQLGuard, sql: str) -> None:
    assert guard.check(sql).sql


# --- range / generate_series: allowed only with literal bounds of a known size ------------------
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM range(10)",
        "SELECT count(*) FROM range(0, 1000000, 1) t(i)",
        "SELECT * FROM generate_series(1, 1000000)",
        "SELECT * FROM generate_series(DATE '2024-01-01', DATE '2024-12-31', INTERVAL 1 DAY)",
        "SELECT range(5) AS l",
        "SELECT * FROM range(-5)",
    ],
)
def test_small_literal_series_pass(guard: SQLGuard, sql: str) -> None:
    assert guard.check(sql).sql


@pytest.mark.parametrize(
    ("sql", "match"),
    [
        ("SELECT count(*) FROM range(1000000000000)", "would yield"),
        ("SELECT count(*) FROM generate_series(0, 1000000)", "would yield"),  # inclusive: 1e6+1
        ("SELECT count(*) FROM range(0, 10, 0)", "literal bounds"),
        ("SELECT * FROM generate_series(TIMESTAMP '2000-01-01', TIMESTAMP '2030-01-01', "
         "INTERVAL 1 SECOND)", "would yield"),
        ("SELECT * FROM range((SELECT max(id) FROM regions))", "literal bounds"),
        ("SELECT * FROM regions, LATERAL range(regions.id * 1000000000)", "literal bounds"),
        ("SELECT list_sum(range(100000000000)) AS s", "would yield"),
        ("SELECT * FROM range(1e300)", "would yield"),
    ],
)
def test_unbounded_series_are_refused(guard: SQLGuard, sql: str, match: str) -> None:
    with pytest.raises(UnsafeSQLError, match=match):
        guard.check(sql)


def test_series_bound_is_a_setting(demo_db: Path) -> None:
    chat = tablechat.connect(demo_db, max_series_rows=10)
    try:
        assert chat.run_sql("SELECT count(*) AS n FROM range(10)").rows == [(10,)]
        with pytest.raises(UnsafeSQLError, match="at most 10"):
            chat.run_sql("SELECT count(*) FROM range(11)")
    finally:
        chat.close()

"""Issue 11: the guard under property-based fuzzing (hypothesis).

SQL comes from a small grammar that mixes ordinary queries over the demo schema with hostile
pieces: DML inside CTEs, LATERAL table functions, refused functions nested in subqueries,
comments, several statements, PRAGMA/ATTACH/COPY/SET, deep nesting, odd quoting, unicode.
Two properties hold for every case:

1. the guard never raises anything but its own refusals (UnsafeSQLError, InvalidSQLError);
2. whatever it passes is exactly one read-only query over the demo's tables that calls only
   allowed functions, re-checked by walking the SQL it returns, with no code of the guard's.

10,000 cases, derandomized so CI sees the same ones every run.
"""

from __future__ import annotations

import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from tablechat import InvalidSQLError, UnsafeSQLError
from tablechat.sql.functions import allowed_names
from tablechat.sql.guard import SQLGuard

SCHEMA = {
    "categories": {"id": "INTEGER", "name": "VARCHAR"},
    "customers": {"id": "INTEGER", "name": "VARCHAR", "email": "VARCHAR", "city": "VARCHAR",
                  "country": "VARCHAR", "region_id": "INTEGER", "segment": "VARCHAR",
                  "signup_date": "DATE"},
    "order_items": {"id": "INTEGER", "order_id": "INTEGER", "product_id": "INTEGER",
                    "quantity": "INTEGER", "unit_price": "DECIMAL(10,2)",
                    "discount": "DECIMAL(4,2)"},
    "orders": {"id": "INTEGER", "customer_id": "INTEGER", "store_id": "INTEGER",
               "order_date": "DATE", "status": "VARCHAR", "channel": "VARCHAR"},
    "products": {"id": "INTEGER", "name": "VARCHAR", "category_id": "INTEGER",
                 "unit_price": "DECIMAL(10,2)", "cost": "DECIMAL(10,2)"},
    "regions": {"id": "INTEGER", "name": "VARCHAR"},
    "stores": {"id": "INTEGER", "name": "VARCHAR", "city": "VARCHAR", "region_id": "INTEGER",
               "opened_on": "DATE"},
}
TABLES = sorted(SCHEMA)
CAP = 100
GUARD = SQLGuard(SCHEMA, dialect="duckdb", max_rows=CAP, allowed_qualifiers=("demo", "main"))
ALLOWED = allowed_names("duckdb")

# --- the grammar ------------------------------------------------------------------------------
SCALARS = {"lower": 1, "upper": 1, "abs": 1, "round": 2, "coalesce": 2, "length": 1,
           "substr": 3, "concat": 2, "nullif": 2, "greatest": 2, "strftime": 2, "year": 1,
           "date_trunc": 2, "regexp_replace": 3, "list_value": 2, "trim": 1}
AGGREGATES = ("count", "sum", "avg", "min", "max", "median", "string_agg")
HOSTILE_FUNCTIONS = (
    "json_execute_serialized_sql", "json_serialize_sql", "query", "query_table",
    "duckdb_settings", "duckdb_databases", "duckdb_memory", "duckdb_secrets", "duckdb_logs",
    "duckdb_temporary_files", "pragma_platform", "pragma_version", "pragma_database_size",
    "current_setting", "getenv", "truncate_duckdb_logs", "which_secret", "read_csv",
    "read_text", "read_parquet", "glob", "nextval", "setseed", "write_log", "getvariable",
    "sqlite_scan", "DuckDB_Settings", "READ_CSV_AUTO", "sleep_ms", "made_up_udf",
)
HOSTILE_STATEMENTS = (
    "DROP TABLE customers", "DELETE FROM orders", "UPDATE regions SET name = 'x'",
    "INSERT INTO regions VALUES (9, 'x')", "CREATE TABLE t AS SELECT 1", "PRAGMA database_list",
    "PRAGMA enable_profiling", "ATTACH '/tmp/x.duckdb' AS x", "DETACH demo", "USE memory",
    "COPY customers TO '/tmp/out.csv'", "COPY (SELECT 1) TO '/tmp/x.parquet'",
    "SET threads = 64", "SET VARIABLE v = 1", "RESET memory_limit", "CALL pragma_version()",
    "INSTALL httpfs", "LOAD httpfs", "EXPORT DATABASE '/tmp/d'", "CHECKPOINT", "VACUUM",
    "BEGIN TRANSACTION", "DESCRIBE customers", "SUMMARIZE customers", "SHOW TABLES",
    "CREATE MACRO m(a) AS a", "SELECT * INTO copy_of FROM customers",
)
DML = ("DELETE FROM customers RETURNING *", "INSERT INTO regions VALUES (1, 'a') RETURNING *",
       "UPDATE regions SET name = 'b' RETURNING *")
ODD_NAMES = ('"customers"', "`orders`", "[regions]", "'customers.csv'", "'/etc/passwd'",
             '"cus""tomers"', "other_db.main.customers", "main.orders", "demo.main.stores",
             "information_schema.tables", "pg_catalog.pg_tables", "sqlite_master",
             '"ℝégions"', "duckdb_settings", "system.main.duckdb_settings()",
             "main.duckdb_settings()", "LATERAL duckdb_settings()")
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
NESTING = st.sampled_from((1, 2, 5, 40, 99, 150, 600, 3000))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@st.composite
def literal(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return str(draw(st.integers(-(10**15), 10**15)))
    if kind == 1:
        return _quote(draw(TEXT))
    if kind == 2:
        return draw(st.sampled_from(("NULL", "TRUE", "3.14", "DATE '2024-01-01'",
                                     "INTERVAL 3 DAY", "E'\\x41'", "$$dollar$$", "1e308")))
    if kind == 3:  # a string that itself holds SQL: it must stay a string
        return _quote(draw(st.sampled_from(HOSTILE_STATEMENTS)))
    if kind == 4:
        return f"[{draw(st.integers(0, 9))}, {draw(st.integers(0, 9))}]"
    return f"{{'k': {draw(st.integers(0, 9))}}}"


@st.composite
def expr(draw: st.DrawFn, table: str, depth: int) -> str:
    columns = sorted(SCHEMA[table])
    kind = draw(st.integers(0, 11 if depth > 0 else 3))
    if kind <= 1:
        return draw(st.sampled_from(columns))
    if kind == 2:
        return draw(literal())
    if kind == 3:
        return f"{table}.{draw(st.sampled_from(columns))}"
    inner = draw(expr(table, depth - 1))
    if kind == 4:
        name = draw(st.sampled_from(sorted(SCALARS)))
        args = [inner] + [draw(literal()) for _ in range(SCALARS[name] - 1)]
        return f"{name}({', '.join(args)})"
    if kind == 5:
        return f"{draw(st.sampled_from(HOSTILE_FUNCTIONS))}({inner})"
    if kind == 6:  # a scalar subquery, possibly hiding a refused call
        other = draw(st.sampled_from(TABLES))
        agg = draw(st.sampled_from(AGGREGATES + HOSTILE_FUNCTIONS))
        return f"(SELECT {agg}({draw(expr(other, depth - 1))}) FROM {other})"
    if kind == 7:
        n = draw(NESTING)
        return "(" * n + inner + ")" * n
    if kind == 8:
        op = draw(st.sampled_from(("+", "-", "*", "/", "||", "AND", "OR", "=", "<", "LIKE")))
        n = draw(st.sampled_from((1, 2, 30, 400)))
        return f" {op} ".join([inner] * (n + 1))
    if kind == 9:
        prefix = draw(st.sampled_from(("NOT ", "- ", "CASE WHEN TRUE THEN ")))
        n = draw(NESTING)
        suffix = " END" * n if prefix.startswith("CASE") else ""
        return prefix * n + inner + suffix
    if kind == 10:
        return f"CAST({inner} AS {draw(st.sampled_from(('VARCHAR', 'INTEGER', 'DATE')))})"
    agg = draw(st.sampled_from(("row_number()", "rank()", f"sum({inner})", f"lag({inner})")))
    return f"{agg} OVER (ORDER BY {draw(st.sampled_from(columns))})"


@st.composite
def source(draw: st.DrawFn) -> tuple[str, str]:
    """A FROM item and the demo table whose columns expressions may use."""
    table = draw(st.sampled_from(TABLES))
    kind = draw(st.integers(0, 9))
    if kind <= 4:
        return table, table
    if kind == 5:
        return draw(st.sampled_from(ODD_NAMES)), table
    if kind == 6:
        n = draw(st.sampled_from((3, 10, 10**6, 10**12)))
        series = draw(st.sampled_from((f"range({n})", f"generate_series(1, {n})",
                                       "range((SELECT max(id) FROM orders))", "unnest([1, 2])")))
        return f"{table}, {series} AS s(x)", table
    if kind == 7:
        fn = draw(st.sampled_from(HOSTILE_FUNCTIONS))
        return f"{table}, LATERAL {fn}({draw(literal())})", table
    if kind == 8:
        return f"{table} CROSS JOIN LATERAL (SELECT {draw(expr(table, 1))} AS v)", table
    other = draw(st.sampled_from(TABLES))
    return f"{table} JOIN {other} ON {table}.id = {other}.id", table


@st.composite
def select(draw: st.DrawFn, depth: int = 2) -> str:
    src, table = draw(source())
    items = [draw(expr(table, depth)) for _ in range(draw(st.integers(1, 3)))]
    sql = f"SELECT {', '.join(items)} FROM {src}"
    if draw(st.booleans()):
        sql += f" WHERE {draw(expr(table, depth))}"
    if draw(st.integers(0, 3)) == 0:
        sql += f" GROUP BY {draw(st.sampled_from(sorted(SCHEMA[table])))}"
    if draw(st.integers(0, 3)) == 0:
        sql += f" LIMIT {draw(st.integers(0, 10**12))}"
    return sql


@st.composite
def statement(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 11))
    if kind <= 3:
        sql = draw(select())
    elif kind == 4:
        sql = f"{draw(select(1))} UNION ALL {draw(select(1))}"
    elif kind == 5:  # a CTE, sometimes holding DML or a refused table function
        body = draw(st.one_of(select(1), st.sampled_from(DML),
                              st.sampled_from([f"SELECT * FROM {f}()" for f in
                                               HOSTILE_FUNCTIONS])))
        sql = f"WITH c AS ({body}) SELECT * FROM c"
    elif kind == 6:
        sql = draw(st.sampled_from(HOSTILE_STATEMENTS))
    elif kind == 7:  # several statements
        sql = f"{draw(select(1))}; {draw(st.sampled_from(HOSTILE_STATEMENTS))}"
    elif kind == 8:
        n = draw(NESTING)
        sql = "(" * n + draw(select(1)) + ")" * n
    elif kind == 9:
        sql = f"FROM {draw(st.sampled_from(TABLES + list(ODD_NAMES)))}"
    elif kind == 10:
        n = draw(st.sampled_from((2, 50, 700)))
        sql = " UNION ALL ".join([f"SELECT id FROM {draw(st.sampled_from(TABLES))}"] * n)
    else:
        sql = draw(select(1))
    # comments, unicode and stray characters anywhere
    mutation = draw(st.integers(0, 7))
    if mutation == 0:
        at = draw(st.integers(0, len(sql)))
        sql = sql[:at] + draw(st.sampled_from(("/* ", "-- ", " */ ", "\n", ";", "'", '"',
                                               "/* ; DROP TABLE x */", "--\n;DELETE FROM orders\n",
                                               "\u202e", "\x00", "$$"))) + sql[at:]
    elif mutation == 1:
        sql = f"/* {draw(TEXT)} */ {sql} -- {draw(TEXT)}"
    elif mutation == 2:
        sql = sql[: draw(st.integers(0, len(sql)))]
    elif mutation == 3:
        at = draw(st.integers(0, len(sql)))
        sql = sql[:at] + draw(TEXT) + sql[at:]
    return sql


# --- the independent check of whatever passes ---------------------------------------------------
_WRITES = tuple(
    c for c in (exp.DML, exp.DDL, exp.Command, exp.Into, exp.Set, exp.Pragma, exp.Use,
                getattr(exp, "Copy", None), getattr(exp, "Attach", None),
                getattr(exp, "Detach", None), getattr(exp, "Install", None),
                getattr(exp, "Transaction", None), getattr(exp, "Describe", None),
                getattr(exp, "Summarize", None), getattr(exp, "Show", None),
                getattr(exp, "Export", None), getattr(exp, "Call", None))
    if isinstance(c, type)
)
_TABLE_CALLS = {"unnest", "range", "generate_series"}
_HOSTILE = {name.lower() for name in HOSTILE_FUNCTIONS}


def _assert_read_only_over_known_tables(sql: str) -> None:
    statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    assert len(statements) == 1, sql
    tree = statements[0]
    assert isinstance(tree, exp.Query), sql
    limit = tree.args.get("limit")
    assert isinstance(limit, exp.Limit) and int(limit.expression.name) <= CAP + 1, sql
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    for node in tree.walk():
        assert not isinstance(node, _WRITES), (type(node).__name__, sql)
        if isinstance(node, exp.Table):
            qualifiers = {p.name.lower() for p in (node.args.get("db"), node.args.get("catalog"))
                          if p is not None}
            assert qualifiers <= {"main", "demo"}, sql
            if isinstance(node.this, exp.Func):
                name = node.this.name if isinstance(node.this, exp.Anonymous) else (
                    node.this.sql_name())
                assert name.lower() in _TABLE_CALLS or isinstance(
                    node.this, exp.GenerateSeries | exp.Unnest), sql
            else:
                name = node.name.lower()
                assert name in SCHEMA or (name in ctes and not qualifiers), sql
        elif isinstance(node, exp.Lateral):
            assert isinstance(node.this, exp.Subquery | exp.Unnest), sql
        elif isinstance(node, exp.Anonymous):
            name = node.name.lower()
            assert name in ALLOWED and name not in _HOSTILE, sql
            assert not name.startswith(("duckdb_", "pragma_", "read_")), sql
        elif isinstance(node, exp.Func):
            assert not isinstance(node, exp.ReadCSV | exp.ReadParquet), sql
            assert node.sql_name().lower() not in _HOSTILE, sql
        elif isinstance(node, exp.GenerateSeries):
            raise AssertionError("unreachable: GenerateSeries is a Func")


@settings(max_examples=10_000, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(statement())
def test_guard_never_crashes_and_passes_only_read_only_queries(sql: str) -> None:
    try:
        checked = GUARD.check(sql)
    except (UnsafeSQLError, InvalidSQLError) as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip()  # a one-line reason
        return
    _assert_read_only_over_known_tables(checked.sql)


def test_the_grammar_reaches_both_outcomes() -> None:
    # a grammar that only ever produced refusals would prove nothing about what passes
    outcomes = {"passed": 0, "refused": 0}

    @settings(max_examples=500, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(statement())
    def count(sql: str) -> None:
        try:
            GUARD.check(sql)
            outcomes["passed"] += 1
        except (UnsafeSQLError, InvalidSQLError):
            outcomes["refused"] += 1

    count()
    assert outcomes["passed"] >= 50 and outcomes["refused"] >= 50, outcomes

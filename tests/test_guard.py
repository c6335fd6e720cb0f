"""The SQL guard: every layer, and the same hostile statements against the sandbox itself."""

from __future__ import annotations

import pytest
from sqlglot import exp

from tablechat import InvalidSQLError, UnsafeSQLError
from tablechat.sql.guard import DENIED_FUNCTIONS, SQLGuard

SCHEMA = {
    "customers": {"id": "INTEGER", "name": "VARCHAR", "city": "VARCHAR"},
    "orders": {
        "id": "INTEGER",
        "customer_id": "INTEGER",
        "total": "DECIMAL(10,2)",
        "order_date": "DATE",
    },
}

# Statements the guard must refuse. Each is also run directly on the sandboxed DuckDB
# connection (tests/test_sandbox.py), which must refuse it too (or find nothing to read).
HOSTILE = [
    # DDL
    "DROP TABLE customers",
    "CREATE TABLE x AS SELECT * FROM customers",
    "CREATE TEMP TABLE x AS SELECT 1",
    "CREATE VIEW v AS SELECT 1",
    "CREATE MACRO m(a) AS a",
    "ALTER TABLE customers ADD COLUMN x INT",
    "ALTER TABLE customers RENAME TO c2",
    "TRUNCATE customers",
    "CREATE SEQUENCE s",
    "CREATE SCHEMA s2",
    "COMMENT ON TABLE customers IS 'x'",
    # DML
    "INSERT INTO customers VALUES (9, 'x', 'y')",
    "UPDATE customers SET name = 'x'",
    "DELETE FROM customers",
    "INSERT INTO customers SELECT * FROM customers",
    "MERGE INTO customers USING customers c2 ON customers.id = c2.id WHEN MATCHED THEN DELETE",
    "SELECT * INTO copy_of FROM customers",
    # several statements in one string
    "SELECT 1; DROP TABLE customers",
    "SELECT * FROM customers; DELETE FROM customers",
    "SELECT 1;SELECT 2",
    "select 1;\n-- hidden\ndrop table orders",
    # DML inside a CTE
    "WITH x AS (DELETE FROM customers RETURNING *) SELECT * FROM x",
    "WITH x AS (INSERT INTO customers VALUES (1, 'a', 'b') RETURNING *) SELECT * FROM x",
    "WITH x AS (UPDATE customers SET name = 'a' RETURNING *) SELECT * FROM x",
    # COPY / EXPORT / IMPORT
    "COPY customers TO '/tmp/out.csv'",
    "COPY (SELECT * FROM customers) TO '/tmp/out.parquet' (FORMAT parquet)",
    "COPY customers FROM '/etc/passwd'",
    "EXPORT DATABASE '/tmp/dump'",
    "IMPORT DATABASE '/tmp/dump'",
    # ATTACH / DETACH / USE
    "ATTACH '/tmp/other.duckdb' AS other",
    "ATTACH ':memory:' AS m",
    "DETACH demo",
    "USE memory",
    # extensions
    "INSTALL httpfs",
    "LOAD httpfs",
    "FORCE INSTALL httpfs",
    # PRAGMA, SET, CALL, transactions, misc commands
    "PRAGMA database_list",
    "PRAGMA enable_profiling",
    "SET threads = 64",
    "SET enable_external_access = true",
    "RESET memory_limit",
    "CALL pragma_version()",
    "CHECKPOINT",
    "VACUUM",
    "BEGIN TRANSACTION",
    "SUMMARIZE customers",
    "DESCRIBE customers",
    "SHOW TABLES",
    # file-reading functions
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM read_parquet('/tmp/x.parquet')",
    "SELECT * FROM parquet_scan('/tmp/x.parquet')",
    "SELECT * FROM parquet_metadata('/tmp/x.parquet')",
    "SELECT * FROM read_json('/tmp/x.json')",
    "SELECT * FROM read_json_auto('/tmp/x.json')",
    "SELECT * FROM read_ndjson_objects('/tmp/x.json')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT content FROM read_blob('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM query('SELECT 1')",
    "SELECT * FROM query_table('customers')",
    "SELECT * FROM sqlite_scan('/tmp/x.db', 't')",
    "SELECT * FROM postgres_scan('host=127.0.0.1', 'public', 't')",
    "SELECT getenv('HOME')",
    "SELECT * FROM duckdb_secrets()",
    "SELECT name FROM customers WHERE name IN (SELECT * FROM read_text('/etc/passwd'))",
    "SELECT (SELECT content FROM read_text('/etc/hostname')) AS h",
    # FROM a file name
    "FROM '/etc/passwd'",
    "SELECT * FROM '/tmp/x.csv'",
    "SELECT * FROM 'data.parquet'",
    'SELECT * FROM "/etc/passwd"',
    # comment and case tricks
    "SeLeCt 1; DrOp TaBlE customers",
    "/* harmless */ DELETE /* really */ FROM customers",
    "SELECT 1 -- ; DROP TABLE customers\n; DROP TABLE customers",
    "select * from READ_CSV('/etc/passwd')",
    "SELECT * FROM Read_Csv_Auto('/etc/passwd')",
    "SELECT * FROM customers UNION ALL SELECT * FROM read_csv('/etc/passwd')",
    # other databases and catalogs
    "SELECT * FROM other_db.main.customers",
    "SELECT * FROM system.main.duckdb_settings()",
]


@pytest.fixture()
def guard() -> SQLGuard:
    return SQLGuard(SCHEMA, dialect="duckdb", max_rows=100, allowed_qualifiers=("demo", "main"))


def test_there_are_at_least_sixty_hostile_statements() -> None:
    assert len(HOSTILE) >= 60
    assert len(set(HOSTILE)) == len(HOSTILE)


@pytest.mark.parametrize("sql", HOSTILE)
def test_hostile_statement_is_refused(guard: SQLGuard, sql: str) -> None:
    with pytest.raises((UnsafeSQLError, InvalidSQLError)):
        guard.check(sql)


# --- layer 1: exactly one statement ---------------------------------------------------------
@pytest.mark.parametrize("sql", ["SELECT 1; SELECT 2", "SELECT id FROM customers;;SELECT 1"])
def test_several_statements_are_unsafe(guard: SQLGuard, sql: str) -> None:
    with pytest.raises(UnsafeSQLError, match="one statement"):
        guard.check(sql)


def test_trailing_semicolon_is_one_statement(guard: SQLGuard) -> None:
    assert guard.check("SELECT id FROM customers;").sql.startswith("SELECT id FROM customers")


def test_empty_sql_is_invalid(guard: SQLGuard) -> None:
    with pytest.raises(InvalidSQLError, match="empty"):
        guard.check("   ")


def test_parse_error_reports_line_and_column(guard: SQLGuard) -> None:
    with pytest.raises(InvalidSQLError) as info:
        guard.check("SELECT id FROM customers WHERE (id = 1")
    assert info.value.line == 1
    assert info.value.col is not None
    assert "line 1" in info.value.for_model()


# --- layer 2: only queries, no write node anywhere -------------------------------------------
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id FROM customers",
        "FROM customers",
        "WITH c AS (SELECT id FROM customers) SELECT * FROM c",
        "SELECT id FROM customers UNION SELECT customer_id FROM orders",
        "SELECT id FROM customers INTERSECT SELECT customer_id FROM orders",
        "SELECT * FROM range(5)",
        "SELECT unnest([1, 2, 3]) AS x",
    ],
)
def test_read_only_queries_pass(guard: SQLGuard, sql: str) -> None:
    assert guard.check(sql).sql


def test_cte_with_dml_is_unsafe(guard: SQLGuard) -> None:
    with pytest.raises(UnsafeSQLError, match="DELETE"):
        guard.check("WITH x AS (DELETE FROM customers RETURNING *) SELECT * FROM x")


# --- layer 3: tables and columns --------------------------------------------------------------
def test_unknown_table_is_invalid_and_lists_tables(guard: SQLGuard) -> None:
    with pytest.raises(InvalidSQLError, match="customers, orders"):
        guard.check("SELECT * FROM clients")


def test_unknown_column_is_invalid(guard: SQLGuard) -> None:
    with pytest.raises(InvalidSQLError, match="revenue"):
        guard.check("SELECT revenue FROM orders")


def test_cte_names_are_not_mistaken_for_unknown_tables(guard: SQLGuard) -> None:
    out = guard.check(
        "WITH big AS (SELECT * FROM orders WHERE total > 10) SELECT count(*) FROM big"
    )
    assert out.tables == {"big", "orders"}


def test_table_names_are_case_insensitive(guard: SQLGuard) -> None:
    assert guard.check("SELECT ID FROM Customers").sql


def test_own_catalog_qualifier_is_allowed(guard: SQLGuard) -> None:
    assert guard.check("SELECT id FROM demo.main.customers").sql


def test_validation_runs_on_a_copy_and_the_original_shape_is_executed(guard: SQLGuard) -> None:
    out = guard.check("SELECT name FROM customers c JOIN orders o ON o.customer_id = c.id")
    # qualify would have added aliases and quotes; the executed SQL keeps the original shape
    assert out.sql == (
        "SELECT name FROM customers AS c JOIN orders AS o ON o.customer_id = c.id LIMIT 101"
    )


# The column check's fast path (names resolve against the tables read) and qualify, which decides
# whatever the fast path cannot show.
RESOLVING = [
    "SELECT c.name, sum(o.total) AS spent FROM customers c JOIN orders o ON o.customer_id = c.id "
    "GROUP BY c.name ORDER BY spent DESC",
    "WITH big AS (SELECT customer_id, total FROM orders WHERE total > 10) "
    "SELECT b.customer_id, count(*) FROM big b GROUP BY b.customer_id",
    "SELECT s.n FROM (SELECT count(*) AS n FROM orders) s",
    "SELECT customers.* FROM customers",
    "SELECT city, count(*) AS n FROM customers GROUP BY city HAVING n > 1",
    "WITH t(a, b) AS (SELECT id, city FROM customers) SELECT a, b FROM t",
]
NOT_RESOLVING = [
    ("SELECT c.order_date FROM customers c JOIN orders o ON o.customer_id = c.id", "order_date"),
    ("SELECT x.name FROM customers c", "x"),
    ("SELECT revenue FROM orders", "revenue"),
    ("SELECT customers.total FROM customers", "total"),
]


def _qualify_calls(guard: SQLGuard, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = guard._qualify

    def counting(tree: exp.Expr) -> exp.Expr:
        calls.append(tree.sql())
        return original(tree)

    monkeypatch.setattr(guard, "_qualify", counting)
    return calls


@pytest.mark.parametrize("sql", RESOLVING)
def test_resolving_columns_pass_without_qualify(
    guard: SQLGuard, monkeypatch: pytest.MonkeyPatch, sql: str
) -> None:
    calls = _qualify_calls(guard, monkeypatch)
    assert guard.check(sql).sql
    assert calls == []


@pytest.mark.parametrize("sql", RESOLVING)
def test_fast_path_accepts_only_what_qualify_accepts(guard: SQLGuard, sql: str) -> None:
    tree = guard._dialect.parse(sql)[0]
    guard._qualify(tree)  # raises if qualify disagreed


@pytest.mark.parametrize(("sql", "name"), NOT_RESOLVING)
def test_columns_that_do_not_resolve_are_left_to_qualify(
    guard: SQLGuard, monkeypatch: pytest.MonkeyPatch, sql: str, name: str
) -> None:
    calls = _qualify_calls(guard, monkeypatch)
    with pytest.raises(InvalidSQLError, match=name):
        guard.check(sql)
    assert calls, "qualify words the error"


def test_constructs_the_fast_path_cannot_follow_still_pass(
    guard: SQLGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _qualify_calls(guard, monkeypatch)
    # a struct field (t.s.a) and a fully qualified column: qualify decides, and lets them pass
    assert guard.check("SELECT t.s.a FROM (SELECT {'a': 1} AS s) t").sql
    assert guard.check("SELECT main.customers.name FROM main.customers").sql
    assert len(calls) == 2


def test_demo_gold_queries_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import tablechat
    from tablechat._resources import resource_path

    tc = tablechat.connect()
    try:
        guard = tc.guard()
        calls = _qualify_calls(guard, monkeypatch)
        lines = resource_path("data/questions/demo.jsonl").read_text().splitlines()
        gold = [json.loads(line)["gold_sql"] for line in lines if line.strip()]
        for sql in gold:
            guard.check(sql)
    finally:
        tc.close()
    # a cheap check for the common case; qualify stays the referee for the rest
    assert len(calls) <= len(gold) // 10, calls


# --- layer 4: function allow-list (more in tests/security/test_guard_functions.py) ---------------
@pytest.mark.parametrize("name", sorted(DENIED_FUNCTIONS))
def test_every_denied_function_is_refused_in_select_and_from(guard: SQLGuard, name: str) -> None:
    # a name sqlglot knows with another arity (current_catalog takes none) fails to parse:
    # refused all the same
    with pytest.raises((UnsafeSQLError, InvalidSQLError)):
        guard.check(f"SELECT {name}('x') AS v")
    with pytest.raises((UnsafeSQLError, InvalidSQLError)):
        guard.check(f"SELECT * FROM {name}('x')")
    # and where it parses, the refusal names it
    messages = []
    for sql in (f"SELECT * FROM {name}()", f"SELECT * FROM {name}('x')"):
        try:
            guard.check(sql)
        except UnsafeSQLError as exc:
            messages.append(str(exc))
        except InvalidSQLError:
            pass
    assert any(name in m and "not allowed" in m for m in messages), messages


def test_typed_and_anonymous_readers_are_both_caught(guard: SQLGuard) -> None:
    import sqlglot

    typed = sqlglot.parse_one("SELECT * FROM read_csv('x')", read="duckdb")
    anonymous = sqlglot.parse_one("SELECT * FROM glob('x')", read="duckdb")
    assert typed.find(exp.ReadCSV) is not None
    assert anonymous.find(exp.Anonymous) is not None
    for sql in ("SELECT * FROM read_csv('x')", "SELECT * FROM glob('x')"):
        with pytest.raises(UnsafeSQLError):
            guard.check(sql)


# --- layer 5: row cap -----------------------------------------------------------------------------
def test_missing_limit_is_added(guard: SQLGuard) -> None:
    # one row beyond the cap of 100, so the database layer can tell a cut result
    out = guard.check("SELECT id FROM customers")
    assert out.sql.endswith("LIMIT 101") and out.limit == 100


def test_smaller_limit_is_kept(guard: SQLGuard) -> None:
    out = guard.check("SELECT id FROM customers ORDER BY id LIMIT 5")
    assert out.sql.endswith("LIMIT 5") and out.limit == 5


def test_larger_limit_is_lowered(guard: SQLGuard) -> None:
    out = guard.check("SELECT id FROM customers LIMIT 100000")
    assert out.sql.endswith("LIMIT 101") and "100000" not in out.sql and out.limit == 100


def test_limit_at_the_cap_is_kept(guard: SQLGuard) -> None:
    out = guard.check("SELECT id FROM customers LIMIT 100")
    assert out.sql.endswith("LIMIT 100") and out.limit == 100
    out = guard.check("SELECT id FROM customers LIMIT 101")
    assert out.sql.endswith("LIMIT 101") and out.limit == 100


def test_union_gets_one_limit_on_the_whole(guard: SQLGuard) -> None:
    out = guard.check("SELECT id FROM customers UNION SELECT customer_id FROM orders")
    assert out.sql.endswith("LIMIT 101")
    assert out.sql.count("LIMIT") == 1


def test_row_cap_can_be_lifted_per_call(guard: SQLGuard) -> None:
    assert "LIMIT" not in guard.check("SELECT id FROM customers", max_rows=None).sql


# --- layer 6: dialect and repair -------------------------------------------------------------
def test_sqlite_double_quoted_strings_are_repaired(guard: SQLGuard) -> None:
    out = guard.check('SELECT id FROM customers WHERE city = "Berlin"')
    assert "'Berlin'" in out.sql
    assert out.notes


def test_mysql_backticks_are_repaired(guard: SQLGuard) -> None:
    out = guard.check("SELECT `name` FROM `customers` LIMIT 3")
    assert out.repaired
    assert "`" not in out.sql and "customers" in out.sql


def test_output_is_transpiled_to_the_target_dialect() -> None:
    pg = SQLGuard(SCHEMA, dialect="postgres", max_rows=10)
    out = pg.check("SELECT id FROM customers")
    assert out.sql == "SELECT id FROM customers LIMIT 11"
    tsql = SQLGuard(SCHEMA, dialect="tsql", max_rows=10)
    assert "TOP 11" in tsql.check("SELECT id FROM customers").sql

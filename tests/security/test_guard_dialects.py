"""The guard's policy in the dialects users reach through SQLAlchemy beyond one machine (issue 15).

Trino, Spark, BigQuery, Snowflake and ClickHouse (and the targeted PostgreSQL, MySQL and
SQLite): ``SQLGuard(schema, dialect=...)`` refuses each dialect's own ways to write, to read
files or the network, and to read server state, and lets ordinary SELECTs through, in that
dialect's syntax. Before this file, BigQuery's ``@@project_id``, MySQL's ``@@datadir``,
Snowflake's ``$variable`` and ``IDENTIFIER($t)``, ClickHouse's ``SETTINGS``/``FORMAT`` clauses
passed, and Spark's ``LATERAL VIEW explode(...)`` (its unnest) was refused.
"""

from __future__ import annotations

import pytest
import sqlglot

from tablechat import InvalidSQLError, UnsafeSQLError
from tablechat.sql.guard import SQLGuard

SCHEMA = {
    "customers": {"id": "INT", "name": "TEXT", "region": "TEXT"},
    "orders": {"id": "INT", "customer_id": "INT", "amount": "DOUBLE", "created_at": "TIMESTAMP"},
}
DIALECTS = ("trino", "spark", "bigquery", "snowflake", "clickhouse", "postgres", "mysql",
            "sqlite")

# Each dialect's writes, file/network readers and system state, in its own syntax.
REFUSED: dict[str, list[str]] = {
    "trino": [
        "INSERT INTO customers VALUES (1, 'a', 'b')",
        "CREATE TABLE x AS SELECT * FROM customers",
        "MERGE INTO customers USING orders ON customers.id = orders.id WHEN MATCHED THEN DELETE",
        "CALL system.sync_partition_metadata('a', 'b', 'ADD')",
        "EXECUTE IMMEDIATE 'SELECT 1'",
        "SELECT * FROM system.runtime.nodes",
        "SELECT * FROM system.runtime.queries",
        "SELECT * FROM hive.default.secrets",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM TABLE(system.query(query => 'SELECT 1'))",
        "SELECT current_user",
        "SELECT version()",
        "SELECT current_catalog",
    ],
    "spark": [
        "INSERT OVERWRITE TABLE customers SELECT * FROM customers",
        "CREATE TABLE x AS SELECT * FROM customers",
        "MERGE INTO customers USING orders ON customers.id = orders.id WHEN MATCHED THEN DELETE",
        "LOAD DATA INPATH '/tmp/x' INTO TABLE customers",
        "SELECT * FROM read_files('/etc/passwd')",
        "SELECT * FROM csv.`/etc/passwd`",
        "SELECT * FROM parquet.`s3://bucket/key`",
        "SELECT * FROM text.`file:///etc/passwd`",
        "SELECT * FROM read_kafka(bootstrapServers => '127.0.0.1:9092')",
        "SELECT reflect('java.lang.Runtime', 'getRuntime')",
        "SELECT java_method('java.lang.System', 'exit', 0)",
        "SELECT input_file_name() FROM customers",
        "SELECT secret('scope', 'key')",
        "SELECT current_user()",
        "SELECT * FROM global_temp.v",
    ],
    "bigquery": [
        "INSERT INTO customers (id) VALUES (1)",
        "CREATE TABLE x AS SELECT * FROM customers",
        "EXPORT DATA OPTIONS(uri='gs://b/*.csv', format='CSV') AS SELECT * FROM customers",
        "LOAD DATA INTO customers FROM FILES(format='CSV', uris=['gs://x'])",
        "MERGE customers USING orders ON customers.id = orders.id WHEN MATCHED THEN DELETE",
        "EXECUTE IMMEDIATE 'SELECT 1'",
        "SELECT * FROM EXTERNAL_QUERY('conn', 'SELECT 1')",
        "SELECT * FROM `region-us`.INFORMATION_SCHEMA.JOBS",
        "SELECT * FROM other_project.dataset.customers",
        "SELECT SESSION_USER()",
        "SELECT @@project_id",
        "SELECT @@script.job_id",
        "SELECT @param",
    ],
    "snowflake": [
        "INSERT INTO customers (id) VALUES (1)",
        "COPY INTO @stage FROM customers",
        "COPY INTO customers FROM @stage",
        "GET @stage file:///tmp/",
        "PUT file:///etc/passwd @stage",
        "CREATE TABLE x AS SELECT * FROM customers",
        "CALL p()",
        "SELECT * FROM @stage",
        "SELECT $1 FROM @stage/file.csv",
        "SELECT * FROM TABLE(INFER_SCHEMA(LOCATION => '@stage'))",
        "SELECT * FROM TABLE(RESULT_SCAN(LAST_QUERY_ID()))",
        "SELECT GET_PRESIGNED_URL(@stage, 'f')",
        "SELECT * FROM snowflake.account_usage.query_history",
        "SELECT * FROM TABLE(information_schema.query_history())",
        "SELECT SYSTEM$WHITELIST()",
        "SELECT SYSTEM$CANCEL_ALL_QUERIES('x')",
        "SELECT CURRENT_ACCOUNT()",
        "SELECT GET_DDL('table', 'customers')",
        "SELECT $secret_variable",
        "SELECT * FROM IDENTIFIER($t)",
    ],
    "clickhouse": [
        "INSERT INTO customers VALUES (1, 'a', 'b')",
        "INSERT INTO FUNCTION file('x.csv') SELECT * FROM customers",
        "SELECT * FROM url('http://127.0.0.1/x', CSV)",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT * FROM s3('https://bucket/key')",
        "SELECT * FROM remote('127.0.0.1', system.one)",
        "SELECT * FROM remoteSecure('127.0.0.1', default, customers)",
        "SELECT * FROM mysql('h:3306', 'db', 't', 'u', 'p')",
        "SELECT * FROM postgresql('h:5432', 'db', 't', 'u', 'p')",
        "SELECT * FROM executable('x.sh', TSV, 'a int')",
        "SELECT * FROM cluster('c', default.customers)",
        "SELECT * FROM input('a int')",
        "SELECT * FROM system.tables",
        "SELECT * FROM system.users",
        "SELECT name FROM system.settings",
        "SELECT id FROM customers SETTINGS max_execution_time = 0",
        "SELECT id FROM customers FORMAT JSON",
        "SELECT currentUser()",
        "SELECT getSetting('max_threads')",
        "SELECT hostName()",
        "SELECT version()",
        "SELECT dictGet('d', 'a', 1)",
    ],
    "postgres": [
        "COPY customers TO PROGRAM 'id'",
        "SELECT * INTO newt FROM customers",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT * FROM pg_catalog.pg_authid",
        "SELECT current_setting('data_directory')",
    ],
    "mysql": [
        "SELECT load_file('/etc/passwd')",
        "SELECT @@datadir",
        "SELECT @@global.secure_file_priv",
        "SELECT * FROM mysql.user",
        "SELECT sys_exec('id')",
        "REPLACE INTO customers VALUES (1, 'a', 'b')",
    ],
    "sqlite": [
        "ATTACH DATABASE '/tmp/x.db' AS x",
        "SELECT load_extension('x')",
        "SELECT * FROM sqlite_master",
        "SELECT sqlite_version()",
    ],
}

# What a question needs, in each dialect's own spelling: these pass and transpile.
SAFE: dict[str, list[str]] = {
    "trino": [
        "SELECT date_trunc('month', created_at), sum(amount) FROM orders GROUP BY 1",
        "SELECT approx_distinct(name) FROM customers",
        "SELECT try_cast(id AS varchar) FROM customers",
        "SELECT * FROM UNNEST(ARRAY[1, 2]) AS t(x)",
    ],
    "spark": [
        "SELECT date_trunc('MONTH', created_at), sum(amount) FROM orders GROUP BY 1",
        "SELECT * FROM customers LATERAL VIEW explode(array(1, 2)) t AS x",
        "SELECT * FROM customers LATERAL VIEW posexplode(array(1, 2)) t AS p, x",
    ],
    "bigquery": [
        "SELECT DATE_TRUNC(created_at, MONTH), sum(amount) FROM orders GROUP BY 1",
        "SELECT FORMAT_DATE('%Y', DATE(created_at)) FROM orders",
        "SELECT SAFE_DIVIDE(amount, 2) FROM orders",
        "SELECT * FROM UNNEST([1, 2]) AS x",
    ],
    "snowflake": [
        "SELECT DATE_TRUNC('month', created_at), sum(amount) FROM orders GROUP BY 1",
        "SELECT IFF(amount > 1, 'a', 'b') FROM orders",
        "SELECT * FROM TABLE(FLATTEN(input => PARSE_JSON('[1,2]')))",
    ],
    "clickhouse": [
        "SELECT toStartOfMonth(created_at), sum(amount) FROM orders GROUP BY 1",
        "SELECT uniq(name) FROM customers",
        "SELECT countIf(amount > 1) FROM orders",
        "SELECT * FROM customers FINAL",
    ],
    "postgres": ["SELECT date_trunc('month', created_at), sum(amount) FROM orders GROUP BY 1"],
    "mysql": ["SELECT DATE_FORMAT(created_at, '%Y-%m'), sum(amount) FROM orders GROUP BY 1"],
    "sqlite": ["SELECT strftime('%Y-%m', created_at), sum(amount) FROM orders GROUP BY 1"],
}
# Portable questions every dialect must accept (written once, transpiled from DuckDB).
PORTABLE = [
    "SELECT count(*) FROM customers",
    "SELECT region, count(*) AS n FROM customers GROUP BY region ORDER BY n DESC LIMIT 5",
    "SELECT c.name, sum(o.amount) AS total FROM customers AS c JOIN orders AS o "
    "ON o.customer_id = c.id GROUP BY c.name ORDER BY total DESC LIMIT 10",
    "WITH big AS (SELECT customer_id FROM orders WHERE amount > 100) "
    "SELECT count(DISTINCT customer_id) FROM big",
    "SELECT name, row_number() OVER (PARTITION BY region ORDER BY id) AS rn FROM customers",
    "SELECT CASE WHEN amount > 10 THEN 'big' ELSE 'small' END AS size, count(*) FROM orders "
    "GROUP BY 1",
]
# DuckDB's own dangerous spellings, transpiled into each dialect: still refused there.
DUCKDB_ATTACKS = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM 'data.csv'",
    "SELECT current_setting('home_directory')",
    "SELECT * FROM duckdb_settings()",
]


def _cases(table: dict[str, list[str]]) -> list[tuple[str, str]]:
    return [(dialect, sql) for dialect, sqls in table.items() for sql in sqls]


@pytest.fixture(scope="module")
def guards() -> dict[str, SQLGuard]:
    return {d: SQLGuard(SCHEMA, dialect=d, allowed_qualifiers=()) for d in DIALECTS}


def test_every_dialect_of_the_issue_is_covered() -> None:
    for dialect in ("trino", "spark", "bigquery", "snowflake", "clickhouse"):
        assert len(REFUSED[dialect]) >= 10 and SAFE[dialect], dialect


@pytest.mark.parametrize(("dialect", "sql"), _cases(REFUSED))
def test_each_dialects_writes_readers_and_state_are_refused(
    guards: dict[str, SQLGuard], dialect: str, sql: str
) -> None:
    # refused as unsafe, or not a table of this database (its message lists the tables)
    with pytest.raises((UnsafeSQLError, InvalidSQLError)) as caught:
        guards[dialect].check(sql)
    message = str(caught.value)
    assert "\n" not in message
    if isinstance(caught.value, InvalidSQLError):  # never run: a name no table has
        assert "unknown table" in message or "cannot parse" in message, message


@pytest.mark.parametrize(("dialect", "sql"), _cases(SAFE))
def test_each_dialects_own_safe_select_passes_and_reparses(
    guards: dict[str, SQLGuard], dialect: str, sql: str
) -> None:
    checked = guards[dialect].check(sql)
    # what runs is the target dialect's SQL: it parses there, and passes the guard again
    assert sqlglot.parse_one(checked.sql, read=dialect) is not None
    assert guards[dialect].check(checked.sql).sql == checked.sql


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("sql", PORTABLE)
def test_portable_questions_transpile_and_pass_in_every_dialect(
    guards: dict[str, SQLGuard], dialect: str, sql: str
) -> None:
    (written,) = sqlglot.transpile(sql, read="duckdb", write=dialect)
    checked = guards[dialect].check(written)
    assert checked.tables & {"customers", "orders"}  # (a CTE's name is listed too)
    assert checked.limit is not None  # the row cap holds in each dialect's syntax
    sqlglot.parse_one(checked.sql, read=dialect)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("sql", DUCKDB_ATTACKS)
def test_duckdb_attacks_transpiled_are_still_refused(
    guards: dict[str, SQLGuard], dialect: str, sql: str
) -> None:
    (written,) = sqlglot.transpile(sql, read="duckdb", write=dialect)
    with pytest.raises((UnsafeSQLError, InvalidSQLError)):
        guards[dialect].check(written)


def test_the_row_cap_is_written_in_the_dialects_syntax() -> None:
    tsql = SQLGuard(SCHEMA, dialect="tsql", max_rows=10).check("SELECT id FROM customers")
    assert "TOP 11" in tsql.sql
    for dialect in ("trino", "bigquery", "snowflake", "clickhouse", "spark"):
        checked = SQLGuard(SCHEMA, dialect=dialect, max_rows=10).check("SELECT id FROM customers")
        assert checked.sql.endswith("LIMIT 11"), (dialect, checked.sql)


def test_every_sqlalchemy_backend_gets_a_guard_in_its_dialect() -> None:
    from tablechat.sql.sqlalchemy_db import SQLALCHEMY_DIALECTS

    for backend, dialect in SQLALCHEMY_DIALECTS.items():
        guard = SQLGuard(SCHEMA, dialect=dialect)
        assert guard.check("SELECT id FROM customers").tables == {"customers"}, backend
        with pytest.raises(UnsafeSQLError):
            guard.check("DELETE FROM customers")

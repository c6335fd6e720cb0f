"""PostgreSQL for real (issue 15): a server from Debian's packages with a copy of the demo data.

The same questions, guard and sandbox as on DuckDB, against a read-only role. The server is
started once for this module (tests/support/postgres.py) and removed afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tablechat
from tablechat import TableChat
from tablechat._resources import resource_path
from tablechat.errors import QueryTimeoutError, SQLExecutionError, UnsafeSQLError, UploadError
from tests.support.postgres import PostgresServer, load_demo, postgres_server

QUESTIONS = [
    "How many customers are there?",
    "How many orders were placed in 2024?",
    "Revenue by region",
    "Top 5 products by revenue",
]


@pytest.fixture(scope="module")
def pg(demo_db: Path) -> Iterator[PostgresServer]:
    with postgres_server() as server:
        load_demo(server, demo_db)
        yield server


@pytest.fixture(scope="module")
def pg_tc(pg: PostgresServer) -> Iterator[TableChat]:
    semantic = resource_path("data/demo/semantic.yaml")  # the demo's, as for the DuckDB copy
    # the copy has no indexes and CI's machine is busy: answers get the default timeout, the
    # timeout itself is tested on its own instance below
    chat = tablechat.connect(pg.url(), llm_url="", semantic_layer=str(semantic))
    yield chat
    chat.close()


def _rows(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """Rows compared across engines: numbers as rounded floats, in a stable order."""
    def norm(v: object) -> object:
        if isinstance(v, int | float) or type(v).__name__ == "Decimal":
            return round(float(v), 2)  # type: ignore[arg-type]
        return str(v)

    return sorted(tuple(norm(v) for v in row) for row in rows)


def test_the_schema_of_the_copy_is_read(pg_tc: TableChat, offline_tc: TableChat) -> None:
    assert pg_tc.database.dialect == "postgres"
    assert set(offline_tc.snapshot().tables) <= set(pg_tc.snapshot().tables)


@pytest.mark.parametrize("question", QUESTIONS)
def test_questions_give_the_same_answer_as_on_duckdb(
    question: str, pg_tc: TableChat, offline_tc: TableChat
) -> None:
    duck = offline_tc.ask(question)
    post = pg_tc.ask(question)
    assert duck.error is None and post.error is None, (duck.error, post.error)
    assert post.rows and _rows(post.rows) == _rows(duck.rows)


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM customers",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_sleep(10)",
        "SELECT * FROM dblink('host=127.0.0.1', 'SELECT 1') AS t(x int)",
        "WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d",
        "SELECT current_setting('data_directory')",
    ],
)
def test_the_guard_refuses_in_the_postgres_dialect(pg_tc: TableChat, sql: str) -> None:
    with pytest.raises(UnsafeSQLError):
        pg_tc.run_sql(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO customers SELECT * FROM customers LIMIT 1",
        "CREATE TABLE scratch (x int)",
        "UPDATE customers SET name = 'x'",
    ],
)
def test_the_database_refuses_writes_the_guard_never_saw(pg_tc: TableChat, sql: str) -> None:
    """The second layer alone: SQL sent past the guard meets a read-only transaction."""
    with pytest.raises(SQLExecutionError, match="read-only"):
        pg_tc.database.execute(sql, max_rows=10)
    assert pg_tc.run_sql("SELECT count(*) FROM customers").rows == [(5000,)]


def test_a_slow_query_is_cancelled_at_the_timeout(pg: PostgresServer) -> None:
    with tablechat.connect(pg.url(), llm_url="", query_timeout=1) as chat:
        with pytest.raises(QueryTimeoutError):
            chat.database.execute("SELECT pg_sleep(600)", max_rows=1)
        assert chat.run_sql("SELECT 1 AS one").rows == [(1,)]  # the pool still serves


def test_the_reader_role_itself_is_read_only(pg: PostgresServer) -> None:
    """Even a client that skips tablechat's own SET TRANSACTION gets a read-only session."""
    import psycopg

    with psycopg.connect(pg.url().replace("+psycopg", "")) as con:
        assert con.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        assert con.execute("SHOW search_path").fetchone() == ("public",)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            con.execute("CREATE TABLE scratch (x int)")


def test_uploads_are_refused_with_a_clear_message(pg_tc: TableChat) -> None:
    with pytest.raises(UploadError, match="DuckDB"):
        pg_tc.upload("s1", "t.csv", b"a,b\n1,2\n")

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


# --- several schemas (TABLECHAT_SCHEMAS), search_path pinned -----------------------------------

@pytest.fixture(scope="module")
def pg_two(pg: PostgresServer) -> Iterator[TableChat]:
    """The reader with schemas public and extra, and a URL that asks for another search_path
    (extra first): tablechat pins it to public all the same."""
    url = pg.url() + "?options=-csearch_path%3Dextra%2Cpublic"
    semantic = resource_path("data/demo/semantic.yaml")
    chat = tablechat.connect(url, llm_url="", query_timeout=30, schemas="public,extra",
                             semantic_layer=str(semantic))
    yield chat
    chat.close()


def test_tables_of_other_listed_schemas_are_read_as_schema_table(
    pg_two: TableChat, pg_tc: TableChat
) -> None:
    tables = pg_two.snapshot().tables
    assert "extra.notes" in tables and "customers" in tables
    assert [c.name for c in tables["extra.notes"].columns] == ["id", "body"]
    assert tables["extra.notes"].row_count == 2
    assert "CREATE TABLE extra.notes" in pg_two.snapshot().to_prompt(["extra.notes"])
    # the default: the connection's default schema only
    assert not any("." in name for name in pg_tc.snapshot().tables)


def test_the_guard_reads_listed_schemas_and_refuses_the_rest(pg_two: TableChat) -> None:
    assert pg_two.run_sql("SELECT body FROM extra.notes ORDER BY id").rows == [
        ("first",), ("second",)]
    joined = pg_two.run_sql(
        "SELECT n.body, count(*) FROM extra.notes AS n JOIN customers AS c ON c.id = n.id "
        "GROUP BY n.body ORDER BY 1")
    assert joined.rows == [("first", 1), ("second", 1)]
    # the offline engine's spelling of the name, one quoted identifier
    assert pg_two.run_sql('SELECT "extra.notes".body FROM "extra.notes" WHERE id = 2').rows \
        == [("second",)]
    for sql in ("SELECT * FROM pg_catalog.pg_authid", "SELECT * FROM information_schema.tables",
                "SELECT * FROM pg_catalog.pg_user", "SELECT * FROM extra.missing"):
        with pytest.raises(UnsafeSQLError, match="outside this database"):
            pg_two.run_sql(sql)


def test_search_path_is_pinned_to_the_default_schema(pg_two: TableChat) -> None:
    """The URL asked for extra first; each of tablechat's connections reads public only, so an
    unqualified name means what the guard looked up."""
    with pg_two.database._connection() as connection:  # type: ignore[attr-defined]
        cursor = connection.cursor()
        cursor.execute("SHOW search_path")
        assert cursor.fetchone() == ("public",)
    # past the guard too: the database itself no longer finds extra's table unqualified
    with pytest.raises(SQLExecutionError, match="notes"):
        pg_two.database.execute("SELECT * FROM notes", max_rows=1)


def test_a_listed_schema_opens_only_its_own_tables(pg: PostgresServer) -> None:
    """information_schema is readable only when listed, and then as schema.table."""
    chat = tablechat.connect(pg.url(), llm_url="", schemas="public,information_schema",
                             sample_values=0)
    try:
        assert "information_schema.tables" in chat.snapshot().tables
        rows = chat.run_sql("SELECT count(*) FROM information_schema.tables").rows
        assert rows and rows[0][0] > 0
        with pytest.raises(UnsafeSQLError):
            chat.run_sql("SELECT * FROM pg_catalog.pg_authid")
    finally:
        chat.close()


def test_the_offline_engine_answers_over_several_schemas(
    pg_two: TableChat, offline_tc: TableChat
) -> None:
    for question in QUESTIONS:
        duck, post = offline_tc.ask(question), pg_two.ask(question)
        assert post.error is None and post.rows, (question, post.error)
        assert _rows(post.rows) == _rows(duck.rows)
    # the value index reads the other schema's columns too
    assert sorted(pg_two.database.distinct_values("extra.notes", "body")) == ["first", "second"]
    notes = pg_two.ask("How many notes are there?")  # a table of the other schema
    assert notes.error is None and notes.rows == [(2,)], (notes.sql, notes.error)

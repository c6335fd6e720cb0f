"""Layer 7: the database's own sandbox, tested with the guard bypassed."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from pathlib import Path

import duckdb
import pytest

from tablechat import ConfigurationError, QueryTimeoutError, SQLExecutionError, _loop
from tablechat.sql.database import DuckDBDatabase, SQLAlchemyDatabase, open_database
from tests.support.sqlite_files import sqlite_file
from tests.test_guard import HOSTILE

# Statements the sandbox lets run because they only read metadata or touch the session's own
# temporary state; the guard refuses all of them, and the test below shows they change nothing.
SANDBOX_HARMLESS = {
    "CREATE TEMP TABLE x AS SELECT 1",
    "SELECT 1;SELECT 2",
    "PRAGMA database_list",
    "CALL pragma_version()",
    "CHECKPOINT",
    "VACUUM",
    "BEGIN TRANSACTION",
    "SUMMARIZE customers",
    "DESCRIBE customers",
    "SHOW TABLES",
}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def sandbox_file(tmp_path: Path) -> Path:
    path = tmp_path / "shop.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE customers(id INTEGER PRIMARY KEY, name VARCHAR, city VARCHAR);"
        "CREATE TABLE orders(id INTEGER, customer_id INTEGER REFERENCES customers(id),"
        " total DECIMAL(10,2), order_date DATE);"
        "INSERT INTO customers VALUES (1, 'Ada', 'Berlin'), (2, 'Linus', 'Paris');"
        "INSERT INTO orders VALUES (1, 1, 10.5, DATE '2024-01-02');"
    )
    con.close()
    (tmp_path / "secret.csv").write_text("password\nhunter2\n")
    return path


@pytest.fixture()
def sandbox(sandbox_file: Path):
    db = DuckDBDatabase(sandbox_file, timeout=2.0, memory_limit="256MB", threads=1)
    yield db
    db.close()


def test_hostile_statements_are_refused_by_the_database_itself(
    sandbox: DuckDBDatabase, sandbox_file: Path, tmp_path: Path
) -> None:
    before = _digest(sandbox_file)
    ran = set()
    cwd = os.getcwd()
    os.chdir(tmp_path)  # so relative file names would find secret.csv if reads were possible
    try:
        for sql in HOSTILE:
            cur = sandbox.cursor()
            try:
                cur.execute(sql.replace("/etc/passwd", str(tmp_path / "secret.csv")))
                rows = cur.fetchall() if cur.description else []
            except duckdb.Error:
                continue
            ran.add(sql)
            assert "hunter2" not in repr(rows), sql
    finally:
        os.chdir(cwd)
    assert ran <= SANDBOX_HARMLESS, f"the sandbox ran: {sorted(ran - SANDBOX_HARMLESS)}"
    assert not list(Path("/tmp").glob("out.csv"))
    assert _digest(sandbox_file) == before, "the database file changed"


def test_writes_file_reads_and_config_changes_each_raise(
    sandbox: DuckDBDatabase, sandbox_file: Path
) -> None:
    cur = sandbox.cursor()
    for sql in (
        "DELETE FROM customers",
        "CREATE TABLE t(a INT)",
        f"SELECT * FROM read_csv('{sandbox_file.parent / 'secret.csv'}')",
        f"COPY customers TO '{sandbox_file.parent / 'leak.csv'}'",
        f"ATTACH '{sandbox_file.parent / 'other.duckdb'}' AS o",
        "INSTALL httpfs",
        "SET enable_external_access = true",
        "SET max_execution_time = 0",
        "SET memory_limit = '100GB'",
        "SET lock_configuration = false",
    ):
        with pytest.raises(duckdb.Error):
            cur.execute(sql)
    assert not (sandbox_file.parent / "leak.csv").exists()
    settings = dict(
        cur.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN "
            "('enable_external_access', 'lock_configuration', 'max_execution_time', 'threads')"
        ).fetchall()
    )
    assert settings == {
        "enable_external_access": "false",
        "lock_configuration": "true",
        "max_execution_time": "2000",
        "threads": "1",
    }


def test_cartesian_bomb_ends_within_the_timeout_and_the_connection_stays_usable(
    sandbox: DuckDBDatabase,
) -> None:
    bomb = "SELECT count(*) FROM range(100000000) a, range(100000000) b, range(1000) c"
    with pytest.raises(QueryTimeoutError, match="2 s"):
        sandbox.execute(bomb, max_rows=10)
    assert sandbox.execute("SELECT count(*) FROM customers", max_rows=10).rows == [(2,)]


def test_timeout_applies_to_every_thread_cursor(sandbox: DuckDBDatabase) -> None:
    import concurrent.futures

    def run() -> str:
        try:
            sandbox.execute(
                "SELECT count(*) FROM range(100000000) a, range(100000000) b", max_rows=1
            )
        except QueryTimeoutError:
            return "timeout"
        return "finished"

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: run(), range(2)))
    assert results == ["timeout", "timeout"]


def test_each_thread_gets_its_own_cursor(sandbox: DuckDBDatabase) -> None:
    import threading

    seen = []
    t = threading.Thread(target=lambda: seen.append(sandbox.cursor()))
    t.start()
    t.join()
    assert seen[0] is not sandbox.cursor()
    assert sandbox.cursor() is sandbox.cursor()


def test_execution_errors_are_retryable_sql_errors(sandbox: DuckDBDatabase) -> None:
    with pytest.raises(SQLExecutionError, match="nope"):
        sandbox.execute("SELECT nope FROM customers", max_rows=5)


def test_rows_are_capped_and_truncation_reported(sandbox: DuckDBDatabase) -> None:
    result = sandbox.execute("SELECT * FROM range(50)", max_rows=10)
    assert len(result.rows) == 10 and result.truncated
    assert not sandbox.execute("SELECT * FROM range(10)", max_rows=10).truncated


def test_decimals_come_back_as_floats(sandbox: DuckDBDatabase) -> None:
    assert sandbox.execute("SELECT total FROM orders", max_rows=5).rows == [(10.5,)]


def test_reopening_with_other_limits_is_a_configuration_error(
    sandbox_file: Path, sandbox: DuckDBDatabase
) -> None:
    with pytest.raises(ConfigurationError, match="already open"):
        DuckDBDatabase(sandbox_file, timeout=99.0)


def test_snapshot_has_keys_counts_and_samples(sandbox: DuckDBDatabase) -> None:
    snap = sandbox.snapshot()
    assert set(snap.tables) == {"customers", "orders"}
    customers, orders = snap.tables["customers"], snap.tables["orders"]
    assert customers.primary_key == ["id"]
    assert [(f.column, f.ref_table, f.ref_column) for f in orders.foreign_keys] == [
        ("customer_id", "customers", "id")
    ]
    assert customers.row_count == 2
    assert customers.column("city").samples == ["Berlin", "Paris"]
    assert sandbox.snapshot() is snap  # cached


def test_sqlite_through_sqlalchemy_is_read_only_with_a_timeout(tmp_path: Path) -> None:
    path = sqlite_file(
        tmp_path / "shop.sqlite",
        "CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT);"
        "CREATE TABLE orders(id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id));"
        "INSERT INTO customers VALUES (1, 'Ada'), (2, 'Linus'); INSERT INTO orders VALUES (1, 2);",
    )
    db = open_database(f"sqlite:///{path}", timeout=1.0)
    try:
        assert db.dialect == "sqlite"
        assert db.execute("SELECT name FROM customers ORDER BY id", max_rows=5).rows == [
            ("Ada",),
            ("Linus",),
        ]
        with pytest.raises(SQLExecutionError, match=r"readonly|read-only|query_only"):
            db.execute("DELETE FROM customers", max_rows=5)
        with pytest.raises(QueryTimeoutError):  # an endless query, cancelled by the deadline
            db.execute(
                "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) "
                "SELECT count(*) FROM r",
                max_rows=1,
            )
        snap = db.snapshot()
        assert snap.tables["orders"].foreign_keys[0].ref_table == "customers"
        assert snap.tables["customers"].primary_key == ["id"]
        assert db.execute("SELECT count(*) FROM customers", max_rows=1).rows == [(2,)]
    finally:
        db.close()


def test_every_pooled_sqlite_connection_is_read_only(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = sqlite_file(tmp_path / "shop.sqlite",
                       "CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1), (2), (3);")
    db = open_database(f"sqlite:///{path}", timeout=5.0)
    barrier = threading.Barrier(4)

    def attempt(_: int) -> str:
        barrier.wait(5)  # four threads at once: four connections from the pool
        try:
            db.execute("DELETE FROM t", max_rows=1)
        except SQLExecutionError as exc:
            return str(exc)
        return "ran"

    try:
        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(attempt, range(4)))
        assert all("readonly" in o or "read-only" in o for o in outcomes), outcomes
        assert db.execute("SELECT count(*) FROM t", max_rows=1).rows == [(3,)]
    finally:
        db.close()


def test_sqlite_keeps_a_connection_per_thread_and_close_ends_them(tmp_path: Path) -> None:
    import sqlite3

    path = sqlite_file(tmp_path / "shop.sqlite",
                       "CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1);")
    db = open_database(f"sqlite:///{path}", timeout=5.0)
    assert isinstance(db, SQLAlchemyDatabase)
    try:
        others = [threading.Thread(target=db.execute, args=("SELECT 1",),
                                   kwargs={"max_rows": 1}) for _ in range(3)]
        for thread in others:  # threads of others (which may come and go) use the pool
            thread.start()
            thread.join(5)
        assert db.execute("SELECT count(*) FROM t", max_rows=1).rows == [(1,)]
        assert db._kept == []
        asyncio.run(_loop.in_thread(db.execute, "SELECT 1", max_rows=1))
        assert len(db._kept) == 1  # tablechat's worker keeps its own
        mine = db._sqlite_connection()
        assert db._sqlite_connection() is mine  # kept: no pool check-out per query
        others: list[object] = []
        worker = threading.Thread(target=lambda: others.append(db._sqlite_connection()))
        worker.start()
        worker.join(5)
        assert others and others[0] is not mine
        db.close()
        with pytest.raises(sqlite3.ProgrammingError):  # closed with the database
            mine.execute("SELECT 1")
        # still usable afterwards, as a disposed engine is: a new, still read-only connection
        assert db.execute("SELECT count(*) FROM t", max_rows=1).rows == [(1,)]
        assert db._sqlite_connection() is not mine
        with pytest.raises(SQLExecutionError, match=r"readonly|read-only"):
            db.execute("DELETE FROM t", max_rows=1)
    finally:
        db.close()


def test_distinct_values_most_frequent_first_and_errors_mapped(
    tmp_path: Path, demo_db: Path
) -> None:
    path = sqlite_file(tmp_path / "pets.sqlite", "CREATE TABLE pets(kind TEXT);" + "".join(
        f"INSERT INTO pets VALUES ('{k}');" for k in ["cat", "dog", "dog", "eel", "dog", "cat"]))
    import tablechat

    with tablechat.connect(f"sqlite:///{path}") as lite, tablechat.connect(demo_db) as duck:
        assert lite.database.distinct_values("pets", "kind") == ["dog", "cat", "eel"]
        regions = duck.database.distinct_values("regions", "name")
        assert len(regions) == 5 and "Europe" in regions
        for db, table in ((lite.database, "pets"), (duck.database, "regions")):
            with pytest.raises(SQLExecutionError):  # the database's error, as tablechat's
                db.distinct_values(table, "nope")


def test_the_watchdog_can_cancel_each_driver_s_statements(tmp_path: Path) -> None:
    """Databases without a statement timeout of their own are cancelled by the watchdog
    through their driver: sqlite3's interrupt(), psycopg's and oracledb's cancel() on the
    connection, pyodbc's on the cursor."""
    import sqlite3

    from tablechat.sql.sqlalchemy_db import canceller

    con = sqlite3.connect(":memory:")
    try:
        assert canceller(con, con.cursor()) == con.interrupt

        class Conn:
            def cancel(self) -> None: ...

        class Cursor:
            def cancel(self) -> None: ...

        conn, cursor = Conn(), Cursor()
        assert canceller(conn, object()) == conn.cancel
        assert canceller(object(), cursor) == cursor.cancel
        assert canceller(object(), object()) is None
    finally:
        con.close()

"""The database layer: a sandboxed DuckDB connection, or any SQLAlchemy URL.

DuckDB is opened read-only with external access off, a query timeout, memory/thread/temp limits
and the configuration locked (DESIGN.md, guard layer 7). Each thread (and each session with
uploads) gets its own cursor. Other databases run in a read-only transaction with a statement
timeout where the database has one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from .._loop import in_worker_thread
from ..errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    QueryTimeoutError,
    SQLExecutionError,
)
from .schema import Column, ForeignKey, SchemaSnapshot, TableInfo

_SQLALCHEMY_DIALECTS = {
    "postgresql": "postgres",
    "sqlite": "sqlite",
    "mysql": "mysql",
    "mariadb": "mysql",
    "mssql": "tsql",
    "oracle": "oracle",
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "duckdb": "duckdb",
    "trino": "trino",
    "redshift": "redshift",
}


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool  # more rows existed than were fetched
    elapsed_ms: float


def plain_value(value: Any) -> Any:
    """Values safe for JSON and pandas: Decimal → float, keep dates, bytes → hex."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dt.timedelta):
        return str(value)
    return value


def _plain_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    return [tuple(plain_value(v) for v in row) for row in rows]


def is_url(database: str) -> bool:
    return "://" in database


class Database(ABC):
    """What the agent needs from a database."""

    dialect: str = "duckdb"
    name: str = ""
    qualifiers: tuple[str, ...] = ()

    def __init__(self, *, timeout: float, sample_values: int = 5) -> None:
        self.timeout = timeout
        self.sample_values = sample_values
        self._snapshot: SchemaSnapshot | None = None
        self._snapshot_lock = threading.Lock()

    @abstractmethod
    def _cursor(self, sql: str, session: str | None) -> contextlib.AbstractContextManager[Any]:
        """A DBAPI-like cursor that has run ``sql``; the database's errors, raised while it is
        open, come out as tablechat's (SQLExecutionError, QueryTimeoutError)."""

    def execute(self, sql: str, *, max_rows: int, session: str | None = None) -> QueryResult:
        """Run one (already guarded) query and fetch at most ``max_rows`` rows (one more only
        to tell whether the result was cut: ``truncated``)."""
        start = time.perf_counter()
        with self._cursor(sql, session) as cur:
            columns = [d[0] for d in (cur.description or [])]
            rows = cur.fetchmany(max_rows + 1) if cur.description else []
        elapsed = (time.perf_counter() - start) * 1000
        truncated = len(rows) > max_rows
        return QueryResult(columns, _plain_rows(rows[:max_rows]), truncated, elapsed)

    @contextlib.contextmanager
    def batches(
        self, sql: str, *, size: int = 10_000, session: str | None = None
    ) -> Iterator[tuple[list[str], Iterator[list[tuple[Any, ...]]]]]:
        """Run one (already guarded) query; its columns and its rows in batches of ``size``,
        fetched as they are read (an export never holds the whole result)."""
        with self._cursor(sql, session) as cur:
            columns = [d[0] for d in (cur.description or [])]

            def rows() -> Iterator[list[tuple[Any, ...]]]:
                while cur.description and (batch := cur.fetchmany(size)):
                    yield _plain_rows(batch)

            yield columns, rows()

    @abstractmethod
    def _build_snapshot(self) -> SchemaSnapshot: ...

    @property
    def snapshot_cached(self) -> bool:
        """Whether ``snapshot()`` would answer from its cache (no database work)."""
        return self._snapshot is not None

    def snapshot(self, *, refresh: bool = False) -> SchemaSnapshot:
        """The schema, built once and cached."""
        with self._snapshot_lock:
            if self._snapshot is None or refresh:
                self._snapshot = self._build_snapshot()
            return self._snapshot

    def session_tables(self, session: str | None) -> list[TableInfo]:
        """Tables only ``session`` sees (uploads); none by default."""
        return []

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DuckDBDatabase(Database):
    """A DuckDB file opened as a sandbox."""

    dialect = "duckdb"

    def __init__(
        self,
        path: str | Path,
        *,
        timeout: float = 30.0,
        memory_limit: str = "1GB",
        threads: int = 2,
        max_temp_directory_size: str = "1GB",
        sample_values: int = 5,
    ) -> None:
        super().__init__(timeout=timeout, sample_values=sample_values)
        self.path = Path(path)
        if not self.path.is_file():
            raise DatabaseUnavailableError(f"database file not found: {self.path}")
        config: dict[str, Any] = {
            "enable_external_access": False,
            "autoload_known_extensions": False,
            "autoinstall_known_extensions": False,
            "allow_community_extensions": False,
            "max_execution_time": int(timeout * 1000),
            "memory_limit": memory_limit,
            "threads": threads,
            "max_temp_directory_size": max_temp_directory_size,
            "lock_configuration": True,  # last: nothing can loosen the sandbox afterwards
        }
        try:
            self._con = duckdb.connect(str(self.path), read_only=True, config=config)
        except duckdb.ConnectionException as exc:
            if "different configuration" in str(exc):
                raise ConfigurationError(
                    f"{self.path} is already open in this process with other limits "
                    "(timeout, memory, threads); close it first or use the same settings"
                ) from exc
            raise DatabaseUnavailableError(f"cannot open {self.path}: {exc}") from exc
        except duckdb.Error as exc:
            raise DatabaseUnavailableError(f"cannot open {self.path}: {exc}") from exc
        self.name = self._con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        self.qualifiers = (self.name, "main")
        self._local = threading.local()
        self._sessions: dict[str, duckdb.DuckDBPyConnection] = {}
        self._session_tables: dict[str, dict[str, TableInfo]] = {}
        self._sessions_lock = threading.Lock()
        self._session_locks: dict[str, threading.Lock] = {}

    # -- cursors ------------------------------------------------------------------------------
    def cursor(self, session: str | None = None) -> duckdb.DuckDBPyConnection:
        """This thread's cursor, or the session's own (which holds its uploads)."""
        if session is not None:
            with self._sessions_lock:
                if session in self._sessions:
                    return self._sessions[session]
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cursor = cur
        return cur

    @contextlib.contextmanager
    def _cursor(self, sql: str, session: str | None) -> Iterator[duckdb.DuckDBPyConnection]:
        cur = self.cursor(session)
        with self._session_lock(session):
            try:
                cur.execute(sql)
                yield cur
            except duckdb.InterruptException as exc:
                raise QueryTimeoutError(
                    f"the query ran longer than {self.timeout:g} s and was cancelled"
                ) from exc
            except duckdb.Error as exc:
                raise SQLExecutionError(str(exc).strip(), sql=sql) from exc

    def _session_lock(self, session: str | None) -> contextlib.AbstractContextManager[Any]:
        """A session's cursor is shared by its requests: one statement at a time on it."""
        if session is None:
            return contextlib.nullcontext()
        with self._sessions_lock:
            if session not in self._sessions:
                return contextlib.nullcontext()
            return self._session_locks.setdefault(session, threading.Lock())

    # -- session uploads ----------------------------------------------------------------------
    def register_table(self, session: str, name: str, frame: Any) -> TableInfo:
        """Make ``frame`` (a pandas DataFrame) a table that only ``session`` sees."""
        with self._sessions_lock:
            cur = self._sessions.get(session)
            if cur is None:
                cur = self._con.cursor()
                self._sessions[session] = cur
        with self._session_lock(session):
            # DuckDB refuses register() while the cursor holds an unfinished result
            # (a truncated fetchmany leaves one): finish it first
            cur.execute("SELECT 1").fetchall()
            cur.register(name, frame)
            info = self._describe_relation(cur, name, session_only=True)
        with self._sessions_lock:
            self._session_tables.setdefault(session, {})[name] = info
        return info

    def session_tables(self, session: str | None) -> list[TableInfo]:
        if session is None:
            return []
        with self._sessions_lock:
            return list(self._session_tables.get(session, {}).values())

    def drop_session(self, session: str) -> None:
        with self._sessions_lock:
            cur = self._sessions.pop(session, None)
            self._session_tables.pop(session, None)
            self._session_locks.pop(session, None)
        if cur is not None:
            cur.close()

    def _describe_relation(
        self, cur: duckdb.DuckDBPyConnection, name: str, *, session_only: bool
    ) -> TableInfo:
        rel = cur.table(name)
        columns = [Column(n, str(t)) for n, t in zip(rel.columns, rel.types, strict=True)]
        count = cur.execute(f'SELECT count(*) FROM "{name}"').fetchall()
        info = TableInfo(name, columns, int(count[0][0]), session_only=session_only)
        self._add_samples(cur, info)
        return info

    # -- schema -------------------------------------------------------------------------------
    def _build_snapshot(self) -> SchemaSnapshot:
        cur = self._con.cursor()
        try:
            tables: dict[str, TableInfo] = {}
            for name, comment, estimated in cur.execute(
                "SELECT table_name, comment, estimated_size FROM duckdb_tables() "
                "WHERE database_name = current_database() AND NOT temporary "
                "ORDER BY schema_name, table_name"
            ).fetchall():
                tables[name] = TableInfo(name, [], estimated, description=comment or "")
            for name, comment in cur.execute(
                "SELECT view_name, comment FROM duckdb_views() "
                "WHERE database_name = current_database() AND NOT internal AND NOT temporary"
            ).fetchall():
                tables[name] = TableInfo(name, [], None, description=comment or "")
            for tname, cname, ctype, nullable, comment in cur.execute(
                "SELECT table_name, column_name, data_type, is_nullable, comment "
                "FROM duckdb_columns() WHERE database_name = current_database() "
                "ORDER BY table_name, column_index"
            ).fetchall():
                if tname in tables:
                    tables[tname].columns.append(
                        Column(cname, ctype, bool(nullable), description=comment or "")
                    )
            for tname, ctype, cols, ref_table, ref_cols in cur.execute(
                "SELECT table_name, constraint_type, constraint_column_names, "
                "referenced_table, referenced_column_names FROM duckdb_constraints() "
                "WHERE database_name = current_database() "
                "AND constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY')"
            ).fetchall():
                table = tables.get(tname)
                if table is None:
                    continue
                if ctype == "PRIMARY KEY":
                    for c in cols:
                        col = table.column(c)
                        if col is not None:
                            col.primary_key = True
                elif ref_table:
                    for c, rc in zip(cols, ref_cols or cols, strict=False):
                        table.foreign_keys.append(ForeignKey(c, ref_table, rc))
            for table in tables.values():
                if table.row_count is None or table.row_count == 0:
                    row = cur.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()
                    table.row_count = int(row[0]) if row else 0
                self._add_samples(cur, table)
            return SchemaSnapshot("duckdb", tables, self.name)
        finally:
            cur.close()

    def _add_samples(self, cur: duckdb.DuckDBPyConnection, table: TableInfo) -> None:
        if not self.sample_values:
            return
        for col in table.columns:
            if col.family != "text":
                continue
            with contextlib.suppress(duckdb.Error):
                rows = cur.execute(
                    f'SELECT DISTINCT "{col.name}" FROM "{table.name}" '
                    f'WHERE "{col.name}" IS NOT NULL ORDER BY 1 LIMIT {int(self.sample_values)}'
                ).fetchall()
                col.samples = [str(r[0])[:60] for r in rows]

    def distinct_values(
        self, table: str, column: str, *, limit: int = 1000, session: str | None = None
    ) -> list[Any]:
        """Distinct non-null values of a column (for value indexes), most frequent first."""
        sql = (f'SELECT "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL '
               f"GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT {int(limit)}")
        with self._cursor(sql, session) as cur:  # a session's cursor: its lock, too
            return [r[0] for r in cur.fetchall()]

    def close(self) -> None:
        with self._sessions_lock:
            for cur in self._sessions.values():
                with contextlib.suppress(duckdb.Error):
                    cur.close()
            self._sessions.clear()
        with contextlib.suppress(duckdb.Error):
            self._con.close()


def _sqlite_query_only(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA query_only = ON")


class SQLAlchemyDatabase(Database):
    """Any database SQLAlchemy reaches, queried in a read-only transaction."""

    def __init__(self, url: str, *, timeout: float = 30.0, sample_values: int = 5) -> None:
        super().__init__(timeout=timeout, sample_values=sample_values)
        import sqlalchemy as sa

        self._sa = sa
        # SQLite: one connection per thread, kept (see _sqlite_connection)
        self._local = threading.local()
        self._kept: list[Any] = []
        self._generation = 0
        self._kept_lock = threading.Lock()
        try:
            sqlite = url.startswith("sqlite")
            # a file needs no liveness ping per checkout (a server connection may have died)
            self._engine = sa.create_engine(url, pool_pre_ping=not sqlite)
            if sqlite:  # read-only for the connection's whole life, not per query
                sa.event.listen(self._engine, "connect", _sqlite_query_only)
            with self._engine.connect():
                pass
        except ModuleNotFoundError as exc:
            raise ConfigurationError(f"no driver for {url.split('://')[0]}: {exc}") from exc
        except sa.exc.ArgumentError as exc:
            raise ConfigurationError(f"invalid database URL: {exc}") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise DatabaseUnavailableError(f"cannot connect to the database: {exc}") from exc
        backend = self._engine.dialect.name
        self.dialect = _SQLALCHEMY_DIALECTS.get(backend, backend)
        self.name = self._engine.url.database or backend
        default_schema = self._engine.dialect.default_schema_name or "main"
        self.qualifiers = (default_schema, "main", self.name)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        """A DBAPI connection from SQLAlchemy's pool, which rolls the transaction back when it
        is returned; except a SQLite file's in tablechat's worker threads, each of which keeps
        its own (``_sqlite_connection``)."""
        if self._engine.dialect.name == "sqlite" and in_worker_thread():
            driver = self._sqlite_connection()
            try:
                yield driver
            finally:
                driver.rollback()
            return
        connection = self._engine.raw_connection()
        try:
            yield connection
        finally:
            connection.close()

    @contextlib.contextmanager
    def _read_only(self) -> Iterator[Any]:
        """A DBAPI cursor in a read-only transaction bounded by the timeout.

        The driver's own cursor: a question's one query needs none of SQLAlchemy's result
        machinery, which cost as much as a small SQLite query.
        """
        backend = self._engine.dialect.name
        with self._connection() as connection:
            cursor = connection.cursor()
            driver: Any = getattr(connection, "driver_connection", connection)
            deadline = time.monotonic() + self.timeout
            if backend == "sqlite":  # read-only: query_only is set on every connection made
                driver.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
            elif backend == "postgresql":
                cursor.execute("SET TRANSACTION READ ONLY")
                cursor.execute(f"SET LOCAL statement_timeout = {int(self.timeout * 1000)}")
            elif backend in ("mysql", "mariadb"):
                cursor.execute("SET TRANSACTION READ ONLY")
                cursor.execute(f"SET SESSION max_execution_time = {int(self.timeout * 1000)}")
            try:
                yield cursor
            finally:
                if backend == "sqlite":
                    driver.set_progress_handler(None, 0)
                cursor.close()

    def _sqlite_connection(self) -> Any:
        """This thread's own SQLite connection, made by the pool (so ``query_only`` is set on
        it) and then kept by the thread: a SQLite file needs no pool, and checking a connection
        out of SQLAlchemy's and back in cost as much as a small query (~0.15 ms). Only
        tablechat's workers keep one (they live as long as the process); other threads, which
        may come and go, use the pool."""
        kept = getattr(self._local, "kept", None)
        if kept is not None and kept[0] == self._generation:
            return kept[1]
        fairy: Any = self._engine.raw_connection()
        driver = fairy.driver_connection
        fairy.detach()  # the pool forgets it; close() closes it
        with self._kept_lock:
            self._kept.append(driver)
            self._local.kept = (self._generation, driver)
        return driver

    @contextlib.contextmanager
    def _cursor(self, sql: str, session: str | None) -> Iterator[Any]:
        dbapi = self._engine.dialect.loaded_dbapi  # PEP 249: the driver's exception classes
        try:
            with self._read_only() as cursor:
                cursor.execute(sql)
                yield cursor
        except dbapi.OperationalError as exc:
            text = str(exc)
            if "interrupt" in text.lower() or "timeout" in text.lower() or "cancel" in text.lower():
                raise QueryTimeoutError(
                    f"the query ran longer than {self.timeout:g} s and was cancelled"
                ) from exc
            raise SQLExecutionError(text, sql=sql) from exc
        except dbapi.Error as exc:
            raise SQLExecutionError(str(exc), sql=sql) from exc
        except self._sa.exc.SQLAlchemyError as exc:  # the pool could not connect
            raise DatabaseUnavailableError(f"cannot reach the database: {exc}") from exc

    def _build_snapshot(self) -> SchemaSnapshot:
        sa = self._sa
        inspector = sa.inspect(self._engine)
        tables: dict[str, TableInfo] = {}
        for tname in inspector.get_table_names():
            pk = set((inspector.get_pk_constraint(tname) or {}).get("constrained_columns") or [])
            cols = [
                Column(
                    c["name"],
                    str(c["type"]),
                    bool(c.get("nullable", True)),
                    c["name"] in pk,
                    description=str(c.get("comment") or ""),
                )
                for c in inspector.get_columns(tname)
            ]
            fks = [
                ForeignKey(c, fk["referred_table"], rc)
                for fk in inspector.get_foreign_keys(tname)
                for c, rc in zip(fk["constrained_columns"], fk["referred_columns"], strict=False)
            ]
            comment = ""
            with contextlib.suppress(NotImplementedError, sa.exc.SQLAlchemyError):
                comment = (inspector.get_table_comment(tname) or {}).get("text") or ""
            tables[tname] = TableInfo(tname, cols, None, fks, comment)
        prep = self._engine.dialect.identifier_preparer
        with self._engine.connect() as conn:
            for table in tables.values():
                qt = prep.quote(table.name)
                table.row_count = int(
                    conn.exec_driver_sql(f"SELECT count(*) FROM {qt}").scalar_one()
                )
                if not self.sample_values:
                    continue
                for col in table.columns:
                    if col.family != "text":
                        continue
                    qc = prep.quote(col.name)
                    with contextlib.suppress(sa.exc.SQLAlchemyError):
                        rows = conn.exec_driver_sql(
                            f"SELECT DISTINCT {qc} FROM {qt} WHERE {qc} IS NOT NULL "
                            f"ORDER BY 1 LIMIT {int(self.sample_values)}"
                        ).fetchall()
                        col.samples = [str(r[0])[:60] for r in rows]
        return SchemaSnapshot(self.dialect, tables, self.name)

    def distinct_values(
        self, table: str, column: str, *, limit: int = 1000, session: str | None = None
    ) -> list[Any]:
        prep = self._engine.dialect.identifier_preparer
        qt, qc = prep.quote(table), prep.quote(column)
        sql = (f"SELECT {qc} FROM {qt} WHERE {qc} IS NOT NULL GROUP BY {qc} "
               f"ORDER BY count(*) DESC LIMIT {int(limit)}")
        with self._cursor(sql, session) as cursor:
            return [r[0] for r in cursor.fetchall()]

    def close(self) -> None:
        with self._kept_lock:
            kept, self._kept = self._kept, []
            self._generation += 1  # a thread's kept connection is stale: it opens a new one
        for connection in kept:
            with contextlib.suppress(Exception):
                connection.close()
        self._engine.dispose()


def open_database(
    database: str | Path,
    *,
    timeout: float = 30.0,
    memory_limit: str = "1GB",
    threads: int = 2,
    max_temp_directory_size: str = "1GB",
    sample_values: int = 5,
) -> Database:
    """A DuckDB file path, or a SQLAlchemy URL (``duckdb:///path`` opens the native sandbox)."""
    text = str(database)
    if is_url(text):
        if text.startswith("duckdb:///"):
            text = text[len("duckdb:///") :]
        else:
            return SQLAlchemyDatabase(text, timeout=timeout, sample_values=sample_values)
    return DuckDBDatabase(
        text,
        timeout=timeout,
        memory_limit=memory_limit,
        threads=threads,
        max_temp_directory_size=max_temp_directory_size,
        sample_values=sample_values,
    )

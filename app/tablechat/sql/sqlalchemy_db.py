"""Any database SQLAlchemy reaches, queried in a read-only transaction with a statement timeout
where the database has one (SQLite: a progress handler, which also covers fetching; Postgres:
``statement_timeout``, which covers planning; MySQL: ``max_execution_time``)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

from .._loop import in_worker_thread
from ..errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    QueryTimeoutError,
    SQLExecutionError,
)
from .base import Database, ResultLimits
from .schema import Column, ForeignKey, SchemaSnapshot, TableInfo, split_name
from .watchdog import WATCHDOG, Alarm

SQLALCHEMY_DIALECTS = {
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
    "presto": "presto",
    "awsathena": "athena",
    "redshift": "redshift",
    "databricks": "databricks",
    "hive": "hive",  # Spark SQL through PyHive's thrift server
    "clickhouse": "clickhouse",
    "clickhousedb": "clickhouse",  # clickhouse-connect's dialect name
}


def canceller(driver: Any, cursor: Any) -> Callable[[], object] | None:
    """How this DBAPI driver cancels a running statement from another thread, if it can:
    ``interrupt()`` (sqlite3), ``cancel()`` on the connection (psycopg, oracledb) or on the
    cursor (pyodbc, snowflake)."""
    for target, name in ((driver, "interrupt"), (driver, "cancel"), (cursor, "cancel")):
        method = getattr(target, name, None)
        if callable(method):
            return cast("Callable[[], object]", method)
    return None


def _sqlite_query_only(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA query_only = ON")


def _pin_search_path(schema: str | None) -> Callable[[Any, Any], None]:
    """A connect hook that pins PostgreSQL's ``search_path`` to one schema for the
    connection's life (``schema``, or the one the role starts in): unqualified names resolve
    where the guard looked them up, whatever path the role or the URL's options set."""
    def pin(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if schema:
                cursor.execute("SELECT pg_catalog.set_config('search_path', "
                               "pg_catalog.quote_ident(%s), false)", (schema,))
            else:
                cursor.execute("SELECT pg_catalog.set_config('search_path', COALESCE("
                               "pg_catalog.quote_ident(pg_catalog.current_schema()), ''), false)")
        finally:
            cursor.close()
        dbapi_connection.commit()  # the pool rolls back on return: a SET would not last

    return pin


class SQLAlchemyDatabase(Database):
    """Any database SQLAlchemy reaches, queried in a read-only transaction."""

    def __init__(self, url: str, *, timeout: float = 30.0, sample_values: int = 5,
                 limits: ResultLimits | None = None, schemas: tuple[str, ...] = ()) -> None:
        super().__init__(timeout=timeout, sample_values=sample_values, limits=limits)
        import sqlalchemy as sa

        self._sa = sa
        # SQLite: one connection per thread, kept (see _sqlite_connection)
        self._local = threading.local()
        self._kept: list[Any] = []
        self._generation = 0
        self._kept_lock = threading.Lock()
        self._where: dict[str, tuple[str | None, str]] = {}  # snapshot name → (schema, table)
        try:
            sqlite = url.startswith("sqlite")
            # a file needs no liveness ping per checkout (a server connection may have died)
            self._engine = sa.create_engine(url, pool_pre_ping=not sqlite)
            if sqlite:  # read-only for the connection's whole life, not per query
                sa.event.listen(self._engine, "connect", _sqlite_query_only)
            elif self._engine.dialect.name == "postgresql":
                sa.event.listen(self._engine, "connect",
                                _pin_search_path(schemas[0] if schemas else None))
            with self._engine.connect():
                pass
        except ModuleNotFoundError as exc:
            raise ConfigurationError(f"no driver for {url.split('://')[0]}: {exc}") from exc
        except sa.exc.ArgumentError as exc:
            raise ConfigurationError(f"invalid database URL: {exc}") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise DatabaseUnavailableError(f"cannot connect to the database: {exc}") from exc
        backend = self._engine.dialect.name
        self.dialect = SQLALCHEMY_DIALECTS.get(backend, backend)
        self.name = self._engine.url.database or backend
        # the first of TABLECHAT_SCHEMAS is the default (search_path is pinned to it); the
        # others' tables are named schema.table
        default_schema = (schemas[0] if schemas else None) \
            or self._engine.dialect.default_schema_name or "main"
        self.default_schema = default_schema
        self.schemas = tuple(dict.fromkeys((default_schema, *schemas)))
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
    def _read_only(self) -> Iterator[tuple[Any, Alarm | None]]:
        """A DBAPI cursor in a read-only transaction bounded by the timeout, and the
        watchdog's alarm for it (None when the driver cannot cancel a statement).

        The driver's own cursor: a question's one query needs none of SQLAlchemy's result
        machinery, which cost as much as a small SQLite query. The database's own timeout
        comes first; the watchdog also cancels through the driver, for databases that have
        none (SQL Server, Oracle, ...) and for the time a result is fetched.
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
            cancel = canceller(driver, cursor)
            alarm = WATCHDOG.arm(self.timeout, cancel) if cancel is not None else None
            try:
                yield cursor, alarm
            finally:
                if alarm is not None:
                    WATCHDOG.disarm(alarm)
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
        alarm: Alarm | None = None
        try:
            with self._read_only() as (cursor, alarm):
                cursor.execute(sql)
                yield cursor
        except dbapi.OperationalError as exc:
            text = str(exc)
            lower = text.lower()
            if (alarm is not None and alarm.fired) or "interrupt" in lower \
                    or "timeout" in lower or "cancel" in lower:
                raise QueryTimeoutError(
                    f"the query ran longer than {self.timeout:g} s and was cancelled"
                ) from exc
            raise SQLExecutionError(text, sql=sql) from exc
        except dbapi.Error as exc:
            if alarm is not None and alarm.fired:
                raise QueryTimeoutError(
                    f"the query ran longer than {self.timeout:g} s and was cancelled"
                ) from exc
            raise SQLExecutionError(str(exc), sql=sql) from exc
        except self._sa.exc.SQLAlchemyError as exc:  # the pool could not connect
            raise DatabaseUnavailableError(f"cannot reach the database: {exc}") from exc

    def _build_snapshot(self) -> SchemaSnapshot:
        sa = self._sa
        inspector = sa.inspect(self._engine)
        tables: dict[str, TableInfo] = {}
        for schema in self.schemas:
            own = schema == self.default_schema
            where = None if own else schema
            names = list(inspector.get_table_names(schema=where))
            # views too: a read-only role is often given views, not tables
            with contextlib.suppress(NotImplementedError):
                names += [v for v in inspector.get_view_names(schema=where) if v not in names]
            for tname in names:
                info = self._reflect(inspector, where, tname)
                tables[info.name] = info
        with self._engine.connect() as conn:
            for table in tables.values():
                qt = self._quoted(table.name)
                # a savepoint each: a table the role may not read (a listed system schema's)
                # fails alone, without aborting the transaction the others are read in
                with contextlib.suppress(sa.exc.SQLAlchemyError), conn.begin_nested():
                    table.row_count = int(
                        conn.exec_driver_sql(f"SELECT count(*) FROM {qt}").scalar_one()
                    )
                if not self.sample_values:
                    continue
                prep = self._engine.dialect.identifier_preparer
                for col in table.columns:
                    if col.family != "text":
                        continue
                    qc = prep.quote(col.name)
                    with contextlib.suppress(sa.exc.SQLAlchemyError), conn.begin_nested():
                        rows = conn.exec_driver_sql(
                            f"SELECT DISTINCT {qc} FROM {qt} WHERE {qc} IS NOT NULL "
                            f"ORDER BY 1 LIMIT {int(self.sample_values)}"
                        ).fetchall()
                        col.samples = [str(r[0])[:60] for r in rows]
        return SchemaSnapshot(self.dialect, tables, self.name)

    def _reflect(self, inspector: Any, schema: str | None, tname: str) -> TableInfo:
        """One table's columns, keys and comment; named ``schema.table`` outside the
        default schema."""
        sa = self._sa
        pk = set((inspector.get_pk_constraint(tname, schema=schema) or {})
                 .get("constrained_columns") or [])
        cols = [
            Column(
                c["name"],
                str(c["type"]),
                bool(c.get("nullable", True)),
                c["name"] in pk,
                description=str(c.get("comment") or ""),
            )
            for c in inspector.get_columns(tname, schema=schema)
        ]
        fks: list[ForeignKey] = []
        for fk in inspector.get_foreign_keys(tname, schema=schema):
            ref = self._name(fk.get("referred_schema") or schema, fk["referred_table"])
            fks.extend(ForeignKey(c, ref, rc) for c, rc in
                       zip(fk["constrained_columns"], fk["referred_columns"], strict=False))
        comment = ""
        with contextlib.suppress(NotImplementedError, sa.exc.SQLAlchemyError):
            comment = (inspector.get_table_comment(tname, schema=schema) or {}).get("text") or ""
        name = self._name(schema, tname)
        self._where[name] = (schema, tname)
        return TableInfo(name, cols, None, fks, comment)

    def _name(self, schema: str | None, table: str) -> str:
        """A table's name in the snapshot: its own in the default schema, else schema.table."""
        if schema is None or schema == self.default_schema:
            return table
        return f"{schema}.{table}"

    def _quoted(self, name: str) -> str:
        """A snapshot's table name as this database quotes it (schema.table for others)."""
        prep = self._engine.dialect.identifier_preparer
        schema, table = self._where.get(name) or split_name(name)
        return (f"{prep.quote_schema(schema)}." if schema else "") + prep.quote(table)

    def distinct_values(
        self, table: str, column: str, *, limit: int = 1000, session: str | None = None
    ) -> list[Any]:
        """Distinct non-null values of a column (for value indexes), most frequent first."""
        prep = self._engine.dialect.identifier_preparer
        qt, qc = self._quoted(table), prep.quote(column)
        sql = (f"SELECT {qc} FROM {qt} WHERE {qc} IS NOT NULL GROUP BY {qc} "
               f"ORDER BY count(*) DESC LIMIT {int(limit)}")
        with self._cursor(sql, session) as cursor:
            return [r[0] for r in cursor.fetchall()]

    def close(self) -> None:
        """Close the connections threads kept, and the pool."""
        with self._kept_lock:
            kept, self._kept = self._kept, []
            self._generation += 1  # a thread's kept connection is stale: it opens a new one
        for connection in kept:
            with contextlib.suppress(Exception):
                connection.close()
        self._engine.dispose()

"""The DuckDB sandbox: a file opened read-only, external access off, limits locked.

Each thread gets its own cursor, and each session with uploads its own cursor whose temporary
tables hold them. Every statement runs under the watchdog (``watchdog.py``): at the query
timeout its cursor is interrupted, whatever phase it is in, and the cursor stays usable.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from ..errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    QueryTimeoutError,
    SQLExecutionError,
    UploadError,
)
from .base import Database, ResultLimits
from .schema import Column, ForeignKey, SchemaSnapshot, TableInfo
from .watchdog import WATCHDOG

# Text columns sampled by one statement: the sample queries of a table cost
# ceil(text columns / SAMPLE_BATCH) statements, not one per column (issue 11, class 6).
SAMPLE_BATCH = 32


def quote(name: str) -> str:
    """``name`` as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def sample_statements(table: TableInfo, n: int) -> list[tuple[list[Column], str]]:
    """The statements that fetch up to ``n`` smallest distinct values of every text column of
    ``table``: (columns, SQL) pairs, each SQL one row with one list per column."""
    text = [c for c in table.columns if c.family == "text"]
    out = []
    for start in range(0, len(text), SAMPLE_BATCH):
        chunk = text[start : start + SAMPLE_BATCH]
        parts = [
            f"(SELECT list(v ORDER BY v) FROM (SELECT DISTINCT {quote(c.name)} AS v "
            f"FROM {quote(table.name)} WHERE {quote(c.name)} IS NOT NULL ORDER BY 1 "
            f"LIMIT {int(n)}))"
            for c in chunk
        ]
        out.append((chunk, "SELECT " + ", ".join(parts)))
    return out


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
        limits: ResultLimits | None = None,
    ) -> None:
        super().__init__(timeout=timeout, sample_values=sample_values, limits=limits)
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

    def _timeout_error(self) -> QueryTimeoutError:
        return QueryTimeoutError(f"the query ran longer than {self.timeout:g} s and was cancelled")

    @contextlib.contextmanager
    def _cursor(self, sql: str, session: str | None) -> Iterator[duckdb.DuckDBPyConnection]:
        cur = self.cursor(session)
        with self._session_lock(session), WATCHDOG.guard(self.timeout, cur.interrupt) as alarm:
            try:
                cur.execute(sql)
                yield cur
            except duckdb.InterruptException as exc:
                raise self._timeout_error() from exc
            except duckdb.Error as exc:
                if alarm.fired:  # interrupted mid-way, reported as some other failure
                    raise self._timeout_error() from exc
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
        """Make ``frame`` (a pandas DataFrame) a table that only ``session`` sees.

        Its rows are copied into a temporary table of the session's cursor: DuckDB's own
        storage, under the sandbox's memory limit, which a query binds in constant time where
        a registered DataFrame is analysed column by column on every query (a 400-column
        upload took 35 s of sample queries; issue 11, class 6).
        """
        with self._sessions_lock:
            cur = self._sessions.get(session)
            if cur is None:
                cur = self._con.cursor()
                self._sessions[session] = cur
        view = f"tablechat_upload_{uuid.uuid4().hex}"
        with self._session_lock(session), WATCHDOG.guard(self.timeout, cur.interrupt) as alarm:
            try:
                # DuckDB refuses register() while the cursor holds an unfinished result
                # (a truncated fetchmany leaves one): finish it first
                cur.execute("SELECT 1").fetchall()
                cur.register(view, frame)
                try:
                    cur.execute(f"CREATE OR REPLACE TEMP TABLE {quote(name)} AS "
                                f"SELECT * FROM {quote(view)}")
                finally:
                    cur.unregister(view)
                info = self._describe_relation(cur, name, session_only=True)
            except duckdb.Error as exc:
                if alarm.fired or isinstance(exc, duckdb.InterruptException):
                    raise self._timeout_error() from exc
                # e.g. out of memory and temporary directory space: the person's to act on
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                raise UploadError(f"cannot load {name} into the database: {first}") from exc
        with self._sessions_lock:
            self._session_tables.setdefault(session, {})[name] = info
        return info

    def session_tables(self, session: str | None) -> list[TableInfo]:
        """The uploads ``session`` has made, as tables."""
        if session is None:
            return []
        with self._sessions_lock:
            return list(self._session_tables.get(session, {}).values())

    def drop_session(self, session: str) -> None:
        """Forget ``session``'s uploads: closing its cursor frees its temporary tables."""
        with self._sessions_lock:
            cur = self._sessions.pop(session, None)
            self._session_tables.pop(session, None)
            self._session_locks.pop(session, None)
        if cur is not None:
            cur.close()

    def _describe_relation(
        self, cur: duckdb.DuckDBPyConnection, name: str, *, session_only: bool
    ) -> TableInfo:
        rel = cur.table(quote(name))
        columns = [Column(n, str(t)) for n, t in zip(rel.columns, rel.types, strict=True)]
        count = cur.execute(f"SELECT count(*) FROM {quote(name)}").fetchall()
        info = TableInfo(name, columns, int(count[0][0]), session_only=session_only)
        self.add_samples(cur, info)
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
                    row = cur.execute(f"SELECT count(*) FROM {quote(table.name)}").fetchone()
                    table.row_count = int(row[0]) if row else 0
                self.add_samples(cur, table)
            return SchemaSnapshot("duckdb", tables, self.name)
        finally:
            cur.close()

    def add_samples(self, cur: Any, table: TableInfo) -> int:
        """Fill ``samples`` of ``table``'s text columns; returns the statements it ran (one
        per :data:`SAMPLE_BATCH` text columns, plus one per column of a batch that failed)."""
        if not self.sample_values:
            return 0
        ran = 0
        for chunk, sql in sample_statements(table, self.sample_values):
            ran += 1
            try:
                row = cur.execute(sql).fetchone()
            except duckdb.Error:
                row = None
            if row is not None:
                for col, values in zip(chunk, row, strict=True):
                    col.samples = [str(v)[:60] for v in values or []]
                continue
            for col in chunk:  # one column the batch could not sample spoils no other's
                ran += 1
                with contextlib.suppress(duckdb.Error):
                    one = cur.execute(sample_statements(
                        TableInfo(table.name, [col]), self.sample_values)[0][1]).fetchone()
                    col.samples = [str(v)[:60] for v in (one[0] if one else None) or []]
        return ran

    def distinct_values(
        self, table: str, column: str, *, limit: int = 1000, session: str | None = None
    ) -> list[Any]:
        """Distinct non-null values of a column (for value indexes), most frequent first."""
        sql = (f"SELECT {quote(column)} FROM {quote(table)} WHERE {quote(column)} IS NOT NULL "
               f"GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT {int(limit)}")
        with self._cursor(sql, session) as cur:  # a session's cursor: its lock, too
            return [r[0] for r in cur.fetchall()]

    def close(self) -> None:
        """Close every session's cursor and the connection."""
        with self._sessions_lock:
            for cur in self._sessions.values():
                with contextlib.suppress(duckdb.Error):
                    cur.close()
            self._sessions.clear()
        with contextlib.suppress(duckdb.Error):
            self._con.close()

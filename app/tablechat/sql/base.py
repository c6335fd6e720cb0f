"""What every database backend shares: the ``Database`` seam, query results and how a result is
fetched within its row, byte and per-cell budgets.

The row cap alone let one query return a gigabyte (issue 11, class 3: 1,000 rows of a 1 MB
cell each made a 1 GB response and a 5 GB process). Rows are therefore fetched in small
batches, each cell is measured and cut at ``max_cell_bytes``, and fetching stops once the whole
result holds ``max_bytes``: the result then says it was cut (``truncated``) and why.
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
from typing import Any

from .schema import SchemaSnapshot, TableInfo

# The defaults of TABLECHAT_RESULT_MAX_BYTES and TABLECHAT_RESULT_MAX_CELL_BYTES (config.py).
DEFAULT_RESULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_RESULT_MAX_CELL_BYTES = 64 * 1024
CUT_MARK = "…"
_SMALL = 16  # what a number, a date or NULL counts for in the byte budget


@dataclass(frozen=True, slots=True)
class ResultLimits:
    """How much of a result the process may hold: ``max_bytes`` in all, ``max_cell_bytes`` per
    cell (a longer cell is cut and ends with ``…``)."""

    max_bytes: int = DEFAULT_RESULT_MAX_BYTES
    max_cell_bytes: int = DEFAULT_RESULT_MAX_CELL_BYTES

    @classmethod
    def from_settings(cls, settings: Any) -> ResultLimits:
        """The limits a :class:`~tablechat.config.Settings` asks for."""
        return cls(settings.result_max_bytes, settings.result_max_cell_bytes)


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Rows of one query. ``truncated``: more existed than were fetched; ``cut_by`` says which
    budget stopped the fetch ("rows" or "bytes"); ``cells_cut`` counts cells cut short."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool  # more rows existed than were fetched
    elapsed_ms: float
    cut_by: str | None = None
    cells_cut: int = 0


# Types kept as they are, checked by exact type first: ``isinstance`` against a union of types
# costs about 1 µs a cell, which an export of a million rows pays millions of times.
_KEPT = frozenset({str, int, float, bool, type(None), dt.date, dt.datetime, dt.time})
_SCALARS: frozenset[type] = frozenset({int, float, bool, type(None), decimal.Decimal, dt.date,
                                       dt.datetime, dt.time, dt.timedelta})
_SCALAR_CLASSES: tuple[type, ...] = tuple(_SCALARS)
_BINARY = (bytes, bytearray, memoryview)
_TEXTLIKE = (str, *_BINARY)


def plain_value(value: Any) -> Any:
    """Values safe for JSON and pandas: Decimal → float, keep dates, bytes → hex."""
    if type(value) in _KEPT:
        return value
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, _BINARY):
        return bytes(value).hex()
    if isinstance(value, dt.timedelta):
        return str(value)
    return value


def _plain_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    return [tuple(plain_value(v) for v in row) for row in rows]


def cell_size(value: Any, stop: int) -> int:
    """Bytes ``value`` holds, roughly, counted no further than ``stop`` (nested lists and
    structs of DuckDB are walked only that far)."""
    kind = type(value)
    if kind is str:
        return len(value)
    if kind in _SCALARS or isinstance(value, _SCALAR_CLASSES):
        return _SMALL
    if isinstance(value, _TEXTLIKE):
        return len(value)
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, list | tuple | set | frozenset):
        total = _SMALL
        for item in value:
            total += cell_size(item, stop - total)
            if total > stop:
                break
        return total
    return len(str(value)[: stop + 1])


def _cut_cell(value: Any, cap: int) -> Any:
    if isinstance(value, str):
        return value[:cap] + CUT_MARK
    if isinstance(value, _BINARY):
        return bytes(value[: cap // 2]).hex() + CUT_MARK  # hex doubles the size
    return str(value)[:cap] + CUT_MARK


def fetch_bounded(cur: Any, max_rows: int, limits: ResultLimits) -> tuple[
        list[tuple[Any, ...]], bool, str | None, int]:
    """At most ``max_rows`` rows of an executed DBAPI cursor within ``limits``: (rows,
    truncated, cut_by, cells_cut). One row past ``max_rows`` is fetched only to tell whether
    the result was cut.

    Batches start small and grow while rows are small, so a result of huge cells never has
    more than a few of them in Python at once.
    """
    rows: list[tuple[Any, ...]] = []
    used = 0
    cells_cut = 0
    batch = 16
    cap = limits.max_cell_bytes
    while len(rows) <= max_rows:
        fetched = cur.fetchmany(min(batch, max_rows + 1 - len(rows)))
        if not fetched:
            return rows, False, None, cells_cut
        for raw in fetched:
            if len(rows) == max_rows:
                return rows, True, "rows", cells_cut
            row = []
            size = cut = 0
            for value in raw:
                n = cell_size(value, cap)
                if n > cap:
                    value, n = _cut_cell(value, cap), cap
                    cut += 1
                row.append(plain_value(value))
                size += n
            if used + size > limits.max_bytes:
                return rows, True, "bytes", cells_cut
            used += size
            cells_cut += cut
            rows.append(tuple(row))
        if used < len(rows) * 1024:  # small rows: fewer, larger batches
            batch = min(batch * 4, 1024)
    return rows, True, "rows", cells_cut


def is_url(database: str) -> bool:
    """Whether ``database`` is a SQLAlchemy URL rather than a file path."""
    return "://" in database


class Database(ABC):
    """What the agent needs from a database."""

    dialect: str = "duckdb"
    name: str = ""
    qualifiers: tuple[str, ...] = ()

    def __init__(self, *, timeout: float, sample_values: int = 5,
                 limits: ResultLimits | None = None) -> None:
        self.timeout = timeout
        self.sample_values = sample_values
        self.limits = limits or ResultLimits()
        self._snapshot: SchemaSnapshot | None = None
        self._snapshot_lock = threading.Lock()

    @abstractmethod
    def _cursor(self, sql: str, session: str | None) -> contextlib.AbstractContextManager[Any]:
        """A DBAPI-like cursor that has run ``sql``; the database's errors, raised while it is
        open, come out as tablechat's (SQLExecutionError, QueryTimeoutError). Running and
        fetching both stay under the query timeout."""

    def execute(self, sql: str, *, max_rows: int, session: str | None = None) -> QueryResult:
        """Run one (already guarded) query and fetch at most ``max_rows`` rows, and no more
        than the result limits' bytes (``truncated`` and ``cut_by`` say when it was cut)."""
        start = time.perf_counter()
        with self._cursor(sql, session) as cur:
            columns = [d[0] for d in (cur.description or [])]
            if cur.description:
                rows, truncated, cut_by, cells_cut = fetch_bounded(cur, max_rows, self.limits)
            else:
                rows, truncated, cut_by, cells_cut = [], False, None, 0
        elapsed = (time.perf_counter() - start) * 1000
        return QueryResult(columns, rows, truncated, elapsed, cut_by, cells_cut)

    @contextlib.contextmanager
    def batches(
        self, sql: str, *, size: int = 10_000, session: str | None = None
    ) -> Iterator[tuple[list[str], Iterator[list[tuple[Any, ...]]]]]:
        """Run one (already guarded) query; its columns and its rows in batches of at most
        ``size`` rows, fetched as they are read (an export never holds the whole result).

        Cells are whole (an export is not cut per cell), so a batch's rows are counted by their
        bytes too: batches start at 16 rows and grow only while a batch holds less than the
        result byte budget, and shrink again when rows get large.
        """
        budget = self.limits.max_bytes
        with self._cursor(sql, session) as cur:
            columns = [d[0] for d in (cur.description or [])]

            def rows() -> Iterator[list[tuple[Any, ...]]]:
                n = min(16, size)
                while cur.description and (batch := cur.fetchmany(n)):
                    used = sum(cell_size(v, budget) for row in batch for v in row)
                    yield _plain_rows(batch)
                    if used * 4 <= budget:
                        n = min(n * 4, size)
                    elif used > budget:
                        n = max(1, n // 4)

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
    def distinct_values(
        self, table: str, column: str, *, limit: int = 1000, session: str | None = None
    ) -> list[Any]:
        """Distinct non-null values of a column (for value indexes), most frequent first."""

    @abstractmethod
    def close(self) -> None:
        """Release the database's connections."""

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

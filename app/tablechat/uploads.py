"""Reading an uploaded file (CSV, Parquet, JSON) into a DataFrame, safely.

The query sandbox has external file access off, so uploads are read here, by a separate
in-memory DuckDB connection that only ever reads one temporary file this module wrote itself
(under a fixed name: no glob or path tricks from the person's file name). The DataFrame then
becomes a table of one session (``Database.register_table``).

A small file can hold a huge table (a 67 KB Parquet file held 300M rows and took the server
from 1.2 to 8.1 GB; issue 11, class 4), so the table's size once decompressed is bounded
before anything is loaded: its column count from the file's schema, its cells from the
Parquet metadata or a streaming count, and its memory from the column types and one streaming
pass over the lengths of its text. Every step runs under the watchdog's timeout.
"""

from __future__ import annotations

import functools
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from .errors import UploadError
from .sql.duckdb_db import quote
from .sql.watchdog import WATCHDOG, Alarm

if TYPE_CHECKING:
    import pandas as pd

KINDS = {
    ".csv": "csv", ".tsv": "csv", ".txt": "csv",
    ".parquet": "parquet", ".pq": "parquet",
    ".json": "json", ".jsonl": "json", ".ndjson": "json",
}
MAX_NAME = 48
_SNIFF = 64 * 1024
# Bytes a cell of a fixed-width type takes in a DataFrame; other types (text, lists, ...) are
# measured: a pointer and a Python object's overhead plus their text's length.
_FIXED_WIDTH = {"BOOLEAN": 1, "TINYINT": 1, "UTINYINT": 1, "SMALLINT": 2, "USMALLINT": 2,
                "INTEGER": 4, "UINTEGER": 4, "FLOAT": 4, "BIGINT": 8, "UBIGINT": 8,
                "DOUBLE": 8, "DATE": 8, "TIMESTAMP": 8, "TIMESTAMP WITH TIME ZONE": 8,
                "TIME": 8, "INTERVAL": 16, "HUGEINT": 16, "UHUGEINT": 16}
_OBJECT_OVERHEAD = 8 + 49  # a pointer in the column, an empty str object
# DuckDB's own max_line_size: a longer CSV line fails, but only after DuckDB has copied the
# whole line into its error message (8 s for one 20 MB line), so it is refused here first.
MAX_LINE_BYTES = 2_000_000
_MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class UploadLimits:
    """How large an upload may be once decompressed (defaults: the settings' defaults)."""

    max_columns: int = 500
    max_cells: int = 10_000_000
    max_memory_bytes: int = 256 * 1024 * 1024
    timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: Any) -> UploadLimits:
        """The limits a :class:`~tablechat.config.Settings` asks for."""
        return cls(
            max_columns=settings.upload_max_columns,
            max_cells=settings.upload_max_cells,
            max_memory_bytes=int(settings.upload_max_memory_mb * 1024 * 1024),
            timeout=settings.query_timeout,
        )


def table_name(filename: str, taken: set[str], reserved: frozenset[str] = frozenset()) -> str:
    """A safe SQL table name from a file name, not colliding with ``taken`` (lower-case)."""
    stem = Path(filename).name
    for suffix in KINDS:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    name = re.sub(r"[^a-z0-9_]+", "_", stem.lower()).strip("_")[:MAX_NAME] or "upload"
    if not name[0].isalpha():
        name = f"t_{name}"
    if name in reserved:
        name = f"{name}_table"
    base, n = name, 1
    while name in taken:
        n += 1
        name = f"{base}_upload" if n == 2 else f"{base}_upload{n - 1}"
    return name


def _clean_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Column names without quotes or control characters, non-empty and unique."""
    seen: set[str] = set()
    names = []
    for i, raw in enumerate(frame.columns):
        name = re.sub(r'["\x00-\x1f]+', "_", str(raw)).strip() or f"column_{i + 1}"
        base, n = name[:120], 1
        while name.lower() in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name.lower())
        names.append(name)
    frame.columns = names
    return frame


def _as_text(data: bytes, filename: str, kind: str) -> bytes:
    """UTF-8 bytes of a text file, or UploadError for binary data."""
    head = data[:_SNIFF]
    if b"\x00" in head:
        raise UploadError(
            f"{filename} is not a text {kind.upper()} file: it holds binary data "
            "(upload CSV, Parquet or JSON)"
        )
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # every byte decodes; reject if it is mostly control chars
    controls = sum(1 for ch in text[:_SNIFF] if ord(ch) < 32 and ch not in "\r\n\t")
    if controls > len(text[:_SNIFF]) // 100:
        raise UploadError(f"{filename} is not a text {kind.upper()} file: it holds binary data")
    return text.encode("utf-8")


def read_upload(filename: str, source: bytes | str | Path, *, max_mb: float,
                limits: UploadLimits | None = None) -> pd.DataFrame:
    """The file's rows as a DataFrame; :class:`UploadError` with a clear message otherwise
    (also for a file whose table, decompressed, would exceed ``limits``)."""
    shown = Path(filename).name or "the file"
    kind = KINDS.get(Path(shown).suffix.lower())
    if kind is None:
        raise UploadError(
            f"{shown}: unsupported file type; upload a .csv, .tsv, .parquet, .json or .jsonl file"
        )
    limit = int(max_mb * 1024 * 1024)
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise UploadError(f"cannot read {shown}: {exc.strerror}") from exc
        if size > limit:
            raise UploadError(f"{shown} is {size / 1e6:.1f} MB; the upload limit is {max_mb:g} MB")
        data = path.read_bytes()
    if len(data) > limit:
        raise UploadError(f"{shown} is {len(data) / 1e6:.1f} MB; the upload limit is {max_mb:g} MB")
    if not data.strip():
        raise UploadError(f"{shown} is empty")
    if kind == "parquet":
        if data[:4] != b"PAR1" or data[-4:] != b"PAR1":
            raise UploadError(f"{shown} is not a Parquet file (its magic bytes are missing)")
    else:
        data = _as_text(data, shown, kind)
        if kind == "csv" or Path(shown).suffix.lower() in (".jsonl", ".ndjson"):
            _check_lines(data, shown)
    limits = limits or UploadLimits()
    if kind == "csv":
        _check_header(data, shown, limits)
    with tempfile.TemporaryDirectory(prefix="tablechat-upload-") as tmp:
        path = Path(tmp) / f"upload.{kind}"
        path.write_bytes(data)
        del data
        con = duckdb.connect(":memory:", config={"threads": 1, "memory_limit": "1GB"})
        alarm = WATCHDOG.arm(limits.timeout, con.interrupt)
        try:
            if kind == "csv":
                rel = con.read_csv(str(path), sample_size=20_000)
            elif kind == "parquet":
                rel = con.read_parquet(str(path))
            else:
                rel = con.read_json(str(path))
            _expired(alarm)  # an interrupt that came between two statements is lost
            _check_size(con, rel, shown, limits)
            _expired(alarm)
            frame = rel.df()
            _expired(alarm)
        except duckdb.Error as exc:
            if alarm.fired:
                raise UploadError(f"reading {shown} took longer than {limits.timeout:g} s; "
                                  "upload a smaller file") from exc
            text = str(exc).replace(f'"{path}"', shown).replace(str(path), shown).strip()
            first = text.splitlines()[0][:300] if text else type(exc).__name__
            raise UploadError(f"cannot read {shown} as {kind.upper()}: {first}") from exc
        finally:
            WATCHDOG.disarm(alarm)
            con.close()
    if len(frame.columns) == 0:
        raise UploadError(f"{shown} holds no columns")
    return _clean_columns(frame)


def _expired(alarm: Alarm) -> None:
    """Raise DuckDB's own interrupt error once ``alarm`` has gone off."""
    if alarm.fired:
        raise duckdb.InterruptException("the upload's deadline passed")


def _check_lines(data: bytes, shown: str) -> None:
    """Refuse a line-based file with a line over :data:`MAX_LINE_BYTES`."""
    import numpy as np

    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
    bounds = np.concatenate(([-1], ends, [len(data)]))
    longest = int(np.diff(bounds).max()) - 1
    if longest > MAX_LINE_BYTES:
        raise UploadError(f"{shown} has a line of {longest:,} bytes; lines may hold at most "
                          f"{MAX_LINE_BYTES:,}")


def _check_header(data: bytes, shown: str, limits: UploadLimits) -> None:
    """Refuse a CSV file whose header names more than ``max_columns`` columns before DuckDB's
    sniffer sees it (100,000 columns ran it out of its 1 GB). Quoted text is skipped; every
    usual delimiter is tried, since the sniffer has not chosen one yet."""
    header = re.sub(rb'"[^"]*"', b"", data[: data.find(b"\n") if b"\n" in data else None])
    columns = max(header.count(sep) for sep in (b",", b";", b"\t", b"|")) + 1
    if columns > limits.max_columns:
        raise UploadError(f"{shown} has {columns:,} columns; uploads may have at most "
                          f"{limits.max_columns:,}")


def _check_size(con: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, shown: str,
                limits: UploadLimits) -> None:
    """Refuse a table over ``limits`` before it is loaded: columns from the schema, then cells
    from a count (Parquet answers it from its metadata), then memory from the types and one
    streaming pass over the lengths of the other columns."""
    columns = len(rel.columns)
    if columns > limits.max_columns:
        raise UploadError(f"{shown} has {columns:,} columns; uploads may have at most "
                          f"{limits.max_columns:,}")
    counted = rel.aggregate("count(*)").fetchall()[0]
    rows = int(counted[0]) if counted else 0
    if rows * columns > limits.max_cells:
        raise UploadError(
            f"{shown} holds {rows:,} rows × {columns:,} columns = {rows * columns:,} cells once "
            f"decompressed; uploads may hold at most {limits.max_cells:,}")
    fixed = 0
    measured = []
    for name, sql_type in zip(rel.columns, rel.types, strict=True):
        width = _FIXED_WIDTH.get(str(sql_type).upper())
        if width is None and str(sql_type).upper().startswith("DECIMAL"):
            width = 8  # a float column once loaded
        if width is None:
            measured.append(f"coalesce(sum(length({quote(name)}::VARCHAR)), 0)")
        else:
            fixed += width
    total = rows * (fixed + _OBJECT_OVERHEAD * len(measured))
    if measured and total <= limits.max_memory_bytes:
        lengths = rel.aggregate(", ".join(measured)).fetchall()[0]
        total += sum(int(n) for n in lengths)
    if total > limits.max_memory_bytes:
        raise UploadError(
            f"{shown} would take about {total / _MB:,.0f} MB of memory once decompressed; "
            f"uploads may take at most {limits.max_memory_bytes / _MB:,.0f} MB")


@functools.cache
def reserved_words() -> frozenset[str]:
    """DuckDB's reserved keywords (lower-case): not usable as bare table names."""
    con = duckdb.connect(":memory:")
    try:
        rows = con.execute(
            "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category = 'reserved'"
        ).fetchall()
    finally:
        con.close()
    return frozenset(str(r[0]).lower() for r in rows)

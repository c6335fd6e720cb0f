"""Reading an uploaded file (CSV, Parquet, JSON) into a DataFrame, safely.

The query sandbox has external file access off, so uploads are read here, by a separate
in-memory DuckDB connection that only ever reads one temporary file this module wrote itself
(under a fixed name: no glob or path tricks from the person's file name). The DataFrame then
becomes a table of one session (``Database.register_table``).
"""

from __future__ import annotations

import functools
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from .errors import UploadError

if TYPE_CHECKING:
    import pandas as pd

KINDS = {
    ".csv": "csv", ".tsv": "csv", ".txt": "csv",
    ".parquet": "parquet", ".pq": "parquet",
    ".json": "json", ".jsonl": "json", ".ndjson": "json",
}
MAX_NAME = 48
_SNIFF = 64 * 1024


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


def read_upload(filename: str, source: bytes | str | Path, *, max_mb: float) -> pd.DataFrame:
    """The file's rows as a DataFrame; :class:`UploadError` with a clear message otherwise."""
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
    with tempfile.TemporaryDirectory(prefix="tablechat-upload-") as tmp:
        path = Path(tmp) / f"upload.{kind}"
        path.write_bytes(data)
        con = duckdb.connect(":memory:", config={"threads": 1, "memory_limit": "1GB"})
        try:
            if kind == "csv":
                rel = con.read_csv(str(path), sample_size=20_000)
            elif kind == "parquet":
                rel = con.read_parquet(str(path))
            else:
                rel = con.read_json(str(path))
            frame = rel.df()
        except duckdb.Error as exc:
            text = str(exc).replace(f'"{path}"', shown).replace(str(path), shown).strip()
            first = text.splitlines()[0][:300] if text else type(exc).__name__
            raise UploadError(f"cannot read {shown} as {kind.upper()}: {first}") from exc
        finally:
            con.close()
    if len(frame.columns) == 0:
        raise UploadError(f"{shown} holds no columns")
    return _clean_columns(frame)


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

"""A query's whole result as a CSV file, written as its rows are fetched.

What the web UI's "Download CSV" gives for a result cut at the row cap (``max_rows``): the
query runs again, through the same guard and sandbox, with the export's own cap
(``export_max_rows``), and its rows go to the file batch by batch, never all in memory.
A byte bound (``max_bytes``, the disk a caller has left) holds while the file is written: a
batch that would take the file past it is never written, and the export fails with no file.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserFacingError


class ExportTooLargeError(UserFacingError):
    """A CSV export would take more bytes than it may (``max_bytes``); nothing was kept."""

    def __init__(self, message: str, max_bytes: int) -> None:
        super().__init__(message)
        self.max_bytes = max_bytes


@dataclass(frozen=True, slots=True)
class Export:
    """A written CSV file: ``rows`` rows under a header of ``columns``; ``truncated`` when the
    query had more rows than ``export_max_rows`` let through."""

    path: Path
    columns: list[str]
    rows: int
    truncated: bool


def csv_value(value: Any) -> Any:
    """A cell as CSV text: empty for NULL, ISO 8601 for dates and times."""
    if value is None:
        return ""
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    return value


def write_csv(
    path: str | Path,
    columns: Sequence[str],
    batches: Iterable[Sequence[Sequence[Any]]],
    *,
    max_rows: int | None = None,
    max_bytes: int | None = None,
) -> Export:
    """Write ``columns`` and at most ``max_rows`` rows of ``batches`` to ``path``.

    The file appears whole or not at all: it is written beside ``path`` and renamed at the end,
    so a query that fails halfway leaves no partial file (nor an older one replaced). With
    ``max_bytes``, the file never holds more bytes than that, even while it is written: each
    batch is encoded first and written only if it fits; one that does not raises
    :class:`ExportTooLargeError` (and the part written so far is deleted).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # a name of its own: two exports to one path never write into each other's file
    part = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    written = 0
    size = 0
    truncated = False
    text = io.StringIO()
    writer = csv.writer(text)

    def put(fh: io.BufferedWriter) -> None:
        nonlocal size
        data = text.getvalue().encode("utf-8")
        text.seek(0)
        text.truncate()
        if max_bytes is not None and size + len(data) > max_bytes:
            raise ExportTooLargeError(
                f"the CSV would take more than {_mb(max_bytes)}, the disk it may use", max_bytes)
        fh.write(data)
        size += len(data)

    try:
        with part.open("xb") as fh:
            writer.writerow(columns)
            put(fh)
            for batch in batches:
                if max_rows is not None and written + len(batch) > max_rows:
                    batch = batch[: max_rows - written]
                    truncated = True
                writer.writerows([csv_value(v) for v in row] for row in batch)
                put(fh)
                written += len(batch)
                if truncated:
                    break
        part.replace(target)
    finally:
        part.unlink(missing_ok=True)
    return Export(target, list(columns), written, truncated)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB" if n >= 100 * 1024 else f"{n:,} bytes"


__all__ = ["Export", "ExportTooLargeError", "csv_value", "write_csv"]

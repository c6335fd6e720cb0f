"""A query's whole result as a CSV file, written as its rows are fetched.

What the web UI's "Download CSV" gives for a result cut at the row cap (``max_rows``): the
query runs again, through the same guard and sandbox, with the export's own cap
(``export_max_rows``), and its rows go to the file batch by batch, never all in memory.
"""

from __future__ import annotations

import csv
import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
) -> Export:
    """Write ``columns`` and at most ``max_rows`` rows of ``batches`` to ``path``.

    The file appears whole or not at all: it is written beside ``path`` and renamed at the end,
    so a query that fails halfway leaves no partial file (nor an older one replaced).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # a name of its own: two exports to one path never write into each other's file
    part = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    written = 0
    truncated = False
    try:
        with part.open("x", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            for batch in batches:
                if max_rows is not None and written + len(batch) > max_rows:
                    batch = batch[: max_rows - written]
                    truncated = True
                writer.writerows([csv_value(v) for v in row] for row in batch)
                written += len(batch)
                if truncated:
                    break
        part.replace(target)
    finally:
        part.unlink(missing_ok=True)
    return Export(target, list(columns), written, truncated)


__all__ = ["Export", "csv_value", "write_csv"]

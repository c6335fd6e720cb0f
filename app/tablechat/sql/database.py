"""The database layer: a sandboxed DuckDB connection, or any SQLAlchemy URL.

The facade callers import (``tablechat.sql.database``); the parts live in ``base.py`` (the
``Database`` seam, results and their byte budget), ``duckdb_db.py`` (the sandbox),
``sqlalchemy_db.py`` (other databases) and ``watchdog.py`` (query deadlines).
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    Database,
    QueryResult,
    ResultLimits,
    cell_size,
    fetch_bounded,
    is_url,
    plain_value,
)
from .duckdb_db import DuckDBDatabase
from .sqlalchemy_db import SQLAlchemyDatabase


def open_database(
    database: str | Path,
    *,
    timeout: float = 30.0,
    memory_limit: str = "1GB",
    threads: int = 2,
    max_temp_directory_size: str = "1GB",
    sample_values: int = 5,
    limits: ResultLimits | None = None,
    schemas: str | tuple[str, ...] = (),
) -> Database:
    """A DuckDB file path, or a SQLAlchemy URL (``duckdb:///path`` opens the native sandbox).
    ``limits`` bound each result's bytes (default: :class:`ResultLimits`'s); ``schemas``
    (comma-separated or a tuple) are the schemas a SQLAlchemy database reads."""
    text = str(database)
    if is_url(text):
        if text.startswith("duckdb:///"):
            text = text[len("duckdb:///") :]
        else:
            if isinstance(schemas, str):
                schemas = tuple(s.strip() for s in schemas.split(",") if s.strip())
            return SQLAlchemyDatabase(text, timeout=timeout, sample_values=sample_values,
                                      limits=limits, schemas=schemas)
    return DuckDBDatabase(
        text,
        timeout=timeout,
        memory_limit=memory_limit,
        threads=threads,
        max_temp_directory_size=max_temp_directory_size,
        sample_values=sample_values,
        limits=limits,
    )


__all__ = [
    "Database",
    "DuckDBDatabase",
    "QueryResult",
    "ResultLimits",
    "SQLAlchemyDatabase",
    "cell_size",
    "fetch_bounded",
    "is_url",
    "open_database",
    "plain_value",
]

"""Verified examples in JSONL files: one ``{"question": ..., "sql": ...}`` object a line, with
an optional ``"database"`` (or ``"db_id"``, as in eval datasets; ``"gold_sql"`` is read as
``"sql"`` too). ``tablechat examples add FILE`` and ``tablechat eval --memory FILE`` read it."""

from __future__ import annotations

from pathlib import Path

from .._jsonl import records
from ..store import Example, FeedbackError

MAX_FIELD_CHARS = 20_000


def read_examples(path: str | Path, *, database: str | None = None, source: str = "file",
                  verified_by: str | None = None) -> list[Example]:
    """The examples in ``path``; a record without a database gets ``database``. Raises
    :class:`FeedbackError` naming the first bad line."""
    examples = []
    for _, where, record in records(Path(path), FeedbackError):
        question = record.get("question")
        sql = record.get("sql", record.get("gold_sql"))
        db = record.get("database", record.get("db_id", database))
        for name, value in (("question", question), ("sql", sql), ("database", db)):
            if not isinstance(value, str) or not value.strip():
                raise FeedbackError(f"{where}: {name!r} is missing or not a non-empty string"
                                    + (" (pass --database)" if name == "database" else ""))
            if len(value) > MAX_FIELD_CHARS:
                raise FeedbackError(f"{where}: {name!r} is longer than {MAX_FIELD_CHARS} "
                                    "characters")
        assert isinstance(question, str) and isinstance(sql, str) and isinstance(db, str)
        examples.append(Example(db.strip(), question.strip(), sql.strip(), source=source,
                                verified_by=verified_by))
    return examples

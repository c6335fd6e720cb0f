"""JSON Lines files read one way: every non-blank line one JSON object, a bad line reported
with ``path:line`` and what is wrong, in the error class of the caller's users."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def records(path: Path, error: type[Exception]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """``(line, where, record)`` for each non-blank line of ``path``, ``where`` being
    ``path:line``.
    An unreadable file, a line that is not JSON or not an object raises ``error``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {path}: {exc}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{where}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(record, dict):
            raise error(f"{where}: expected a JSON object, got {type(record).__name__}")
        yield number, where, record

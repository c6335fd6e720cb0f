"""Pull one SQL statement out of whatever the model replied.

Survives Markdown fences, ``SQLQuery:`` prefixes, JSON objects (constrained decoding) and prose
around the SQL.
"""

from __future__ import annotations

import json
import re

_LANG = r"```[ \t]*(?:sql|duckdb|postgres|sqlite|mysql)?[ \t]*"
_FENCE = re.compile(_LANG + r"\n?(.*?)```", re.I | re.S)
_OPEN_FENCE = re.compile(_LANG + r"\n(.*)$", re.I | re.S)
_PREFIX = re.compile(r"^\s*(?:SQL\s*Query|SQL|Query|Answer)\s*:\s*", re.I)
_QUERY_START = re.compile(r"\b(WITH|SELECT)\b", re.I)
# A reply that starts with any statement keyword is passed on whole, so the guard can refuse
# (and explain) a write or command instead of the extractor silently dropping it.
_STATEMENT = re.compile(
    r"^\s*(WITH|SELECT|FROM|VALUES|DROP|DELETE|INSERT|UPDATE|MERGE|CREATE|ALTER|TRUNCATE|COPY|"
    r"EXPORT|IMPORT|ATTACH|DETACH|INSTALL|LOAD|PRAGMA|SET|RESET|CALL|USE|BEGIN|COMMIT|GRANT|"
    r"VACUUM|CHECKPOINT|DESCRIBE|SHOW|SUMMARIZE)\b",
    re.I | re.M,
)
_STOP = re.compile(r"\n\s*(?:SQLResult|Answer|Explanation|Question|Note)\s*:", re.I)
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)


def extract_sql(reply: str) -> str:
    """The SQL in ``reply`` (may still be invalid: the guard decides), or '' when none."""
    text = _THINK.sub("", reply or "").strip()
    if not text:
        return ""
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            for key in ("sql", "query", "SQL"):
                if isinstance(data.get(key), str):
                    return extract_sql(data[key])
    fenced = _FENCE.findall(text)
    if fenced:
        text = max(fenced, key=lambda s: len(s.strip())).strip()
    else:
        open_fence = _OPEN_FENCE.search(text)
        if open_fence:
            text = open_fence.group(1).strip()
    stop = _STOP.search(text)
    if stop:
        text = text[: stop.start()]
    text = _PREFIX.sub("", text.strip())
    start = _STATEMENT.search(text) or _QUERY_START.search(text)
    if start is None:
        return ""
    text = text[start.start():]
    # prose after the statement: cut at a blank line followed by text, and at a semicolon
    # unless another statement follows it (the guard refuses several statements)
    text = re.split(r"\n\s*\n(?=[A-Z][a-z])", text, maxsplit=1)[0]
    kept = [text.split(";")[0]]
    for part in text.split(";")[1:]:
        if not _STATEMENT.match(part):
            break
        kept.append(part)
    return ";".join(kept).strip()

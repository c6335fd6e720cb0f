"""Pull one SQL statement out of whatever the model replied.

Survives Markdown fences, ``SQLQuery:`` prefixes, JSON objects (constrained decoding) and prose
around the SQL.
"""

from __future__ import annotations

import json
import re

_FENCE = re.compile(r"```[ \t]*(?:sql|duckdb|postgres|sqlite|mysql)?[ \t]*\n?(.*?)```", re.I | re.S)
_OPEN_FENCE = re.compile(r"```[ \t]*(?:sql|duckdb|postgres|sqlite|mysql)?[ \t]*\n(.*)$", re.I | re.S)
_PREFIX = re.compile(r"^\s*(?:SQL\s*Query|SQL|Query|Answer)\s*:\s*", re.I)
_START = re.compile(r"\b(WITH|SELECT|FROM|VALUES|TABLE)\b", re.I)
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
    start = _START.search(text)
    if start is None:
        return ""
    text = text[start.start():]
    # prose after the statement: cut at the first semicolon, or at a blank line followed by text
    if ";" in text:
        text = text[: text.index(";")]
    else:
        text = re.split(r"\n\s*\n(?=[A-Z][a-z])", text, maxsplit=1)[0]
    return text.strip()

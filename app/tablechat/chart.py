"""A declarative chart spec chosen from a result's shape. Never runs generated code.

Spec: ``{"type": "line"|"bar"|"scatter"|"number", "x": col, "y": col, "title": str,
"color": col | None, "value": ..., "label": ...}``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

MAX_BAR_CATEGORIES = 50


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_time(v: Any) -> bool:
    return isinstance(v, dt.date | dt.datetime)


def _kinds(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    kinds = []
    for i, name in enumerate(columns):
        values = [r[i] for r in rows if r[i] is not None]
        if values and all(_is_time(v) for v in values):
            kinds.append("time")
        elif values and all(_is_number(v) for v in values):
            low = name.lower()
            is_year = low in ("year", "yr") or low.endswith("_year")
            is_month = low in ("month", "quarter") and all(1 <= v <= 12 for v in values)
            kinds.append("period" if is_year or is_month else "number")
            if kinds[-1] == "number" and (low == "id" or low.endswith("_id")):
                kinds[-1] = "key"
        else:
            kinds.append("text")
    return kinds


def chart_spec(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, Any] | None:
    """The chart that fits the result, or None when no chart helps."""
    if not rows or not columns:
        return None
    if len(rows) == 1 and len(columns) == 1:
        value = rows[0][0]
        return {"type": "number", "value": value, "label": columns[0], "title": columns[0]}
    kinds = _kinds(columns, rows)
    measures = [c for c, k in zip(columns, kinds, strict=True) if k == "number"]
    times = [c for c, k in zip(columns, kinds, strict=True) if k in ("time", "period")]
    labels = [c for c, k in zip(columns, kinds, strict=True) if k in ("text", "key")]
    if times and measures and len(rows) > 1:
        color = labels[0] if labels else None
        y = measures[0]
        return {
            "type": "line",
            "x": times[0],
            "y": y,
            "color": color,
            "title": f"{y} by {times[0]}",
        }
    if labels and measures and len(rows) <= MAX_BAR_CATEGORIES:
        y = measures[0]
        return {
            "type": "bar",
            "x": labels[0],
            "y": y,
            "color": None,
            "title": f"{y} by {labels[0]}",
        }
    if len(measures) >= 2 and len(rows) > 1:
        x, y = measures[0], measures[1]
        return {"type": "scatter", "x": x, "y": y, "color": None, "title": f"{y} vs {x}"}
    return None

"""Numbers and dates formatted one way everywhere in the UI (issue 12): the side table, the
table and chart inside each answer, the big number.

Thousands separators; the metric's currency from the semantic layer (``$4,751,697.72``); years
as years (``2019``, never ``2,019`` or ``2019.0``); months by name on time axes.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_YEAR_NAMES = ("year", "yr")


def is_number(value: Any) -> bool:
    """A real number (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_year_column(name: str) -> bool:
    """A column whose numbers are years: shown without separators or decimals."""
    low = name.lower()
    return low in _YEAR_NAMES or low.endswith(("_year", " year")) or low.startswith("year_")


def is_month_column(name: str, values: Sequence[Any]) -> bool:
    """A column of month numbers (1-12): shown by name."""
    nums = [v for v in values if v is not None]
    return (name.lower() in ("month", "month_number", "mon")
            and bool(nums) and all(is_number(v) and float(v).is_integer() and 1 <= v <= 12
                                   for v in nums))


def units_of(semantic: Any) -> dict[str, str]:
    """``{metric name: unit}`` from a semantic layer (``{}`` without one)."""
    metrics = getattr(semantic, "metrics", None) or {}
    return {name.lower(): m.unit for name, m in metrics.items() if getattr(m, "unit", "")}


def unit_for(column: str, units: Mapping[str, str]) -> str:
    """The unit of a column named after a metric (``revenue``, ``total_revenue``), or ""."""
    words = column.lower().replace(" ", "_").split("_")
    low = column.lower()
    for metric, unit in units.items():
        if low == metric or metric in words or low.endswith("_" + metric):
            return unit
    return ""


def number(value: Any, unit: str = "") -> str:
    """A number as people read it: ``5,000`` · ``12.35`` · ``$4,751,697.72``."""
    if not is_number(value):
        return text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a" if math.isnan(value) else str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    if isinstance(value, int):
        body = f"{abs(value):,}"
    elif unit or abs(value) >= 1:
        body = f"{abs(value):,.2f}"
    else:
        body = f"{abs(value):.3g}"
    sign = "-" if value < 0 else ""
    return f"{sign}{unit}{body}"


def short(value: float, unit: str = "") -> str:
    """A compact number for an axis: ``4.8M``, ``$250k``, ``12``."""
    sign = "-" if value < 0 else ""
    v = abs(value)
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            scaled = v / div
            body = f"{scaled:.1f}".rstrip("0").rstrip(".") + suffix
            return f"{sign}{unit}{body}"
    body = f"{v:.2f}".rstrip("0").rstrip(".") if not float(v).is_integer() else f"{int(v)}"
    return f"{sign}{unit}{body}"


def text(value: Any) -> str:
    """Any other value: dates as ISO dates (midnight dropped), None as empty."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime) and value.time() == dt.time(0):
        return value.date().isoformat()
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    return str(value)


def year(value: Any) -> str:
    """A year: ``2019`` whatever its type."""
    if is_number(value) and float(value).is_integer():
        return str(int(value))
    return text(value)


def month(value: Any) -> str:
    """A month number as its name (``Jan``)."""
    if is_number(value) and float(value).is_integer() and 1 <= value <= 12:
        return MONTHS[int(value) - 1]
    return text(value)


def cell(value: Any, column: str, units: Mapping[str, str], *, months: bool = False) -> str:
    """One table cell: years as years, month numbers by name (when ``months``), the metric's
    currency, separators."""
    if is_year_column(column):
        return year(value)
    if months:
        return month(value)
    if is_number(value):
        return number(value, unit_for(column, units))
    return text(value)


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]],
          units: Mapping[str, str]) -> list[list[str]]:
    """Rows as formatted text, column by column."""
    months = [is_month_column(c, [r[i] for r in rows]) for i, c in enumerate(columns)]
    return [[cell(v, c, units, months=m) for v, c, m in zip(r, columns, months, strict=False)]
            for r in rows]

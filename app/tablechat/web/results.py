"""A query result on screen: pages, the "showing N of M" line, the CSV file and the chart.

The chart is built from the declarative spec (``tablechat.chart``) as data for Gradio's native
plots, never by running generated code.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlglot
from sqlglot.errors import SqlglotError

from ..chart import chart_spec
from ..export import Export, write_csv

PAGE_SIZE = 50


@dataclass(slots=True)
class Result:
    sql: str
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool = False  # the query found more rows than the row cap let through
    chart: dict[str, Any] | None = None
    source: str = ""  # the query as written (SQL.source): what an export runs again
    exported: Export | None = None  # the whole result's CSV (its file and row count)
    export_error: str = ""  # why the whole result could not be exported

    @property
    def exportable(self) -> bool:
        """Cut at the row cap, with its query at hand, and not exported whole yet."""
        return self.truncated and bool(self.source) and self.exported is None

    @property
    def pages(self) -> int:
        return max(1, math.ceil(len(self.rows) / PAGE_SIZE))

    def frame(self, rows: list[tuple[Any, ...]] | None = None) -> pd.DataFrame:
        data = [list(r) for r in (self.rows if rows is None else rows)]
        return pd.DataFrame(data, columns=_unique(self.columns))

    def page(self, page: int) -> tuple[pd.DataFrame, str, int]:
        """Rows of page ``page`` (clamped, 0-based), the line saying what is shown, the page."""
        page = min(max(page, 0), self.pages - 1)
        lo = page * PAGE_SIZE
        rows = self.rows[lo: lo + PAGE_SIZE]
        return self.frame(rows), self.info(page), page

    def info(self, page: int = 0) -> str:
        total = len(self.rows)
        more = ""
        if self.truncated and self.exported is not None:
            found, cut = self.exported.rows, self.exported.truncated
            more = (f" (cut at the row cap, TABLECHAT_MAX_ROWS={total}: the query found "
                    f"{found:,}{' or more' if cut else ''} rows; the CSV has "
                    f"{'the first' if cut else 'all'} {found:,})")
        elif self.truncated:
            more = (f" (cut at the row cap, TABLECHAT_MAX_ROWS={total}: the query found more"
                    + (f"; exporting all rows failed: {self.export_error}"
                       if self.export_error else "") + ")")
        if total == 0:
            return "The query returned no rows."
        if total <= PAGE_SIZE:
            return f"{total:,} row{'s' if total != 1 else ''}{more}"
        lo = page * PAGE_SIZE
        hi = min(lo + PAGE_SIZE, total)
        return (f"Showing rows {lo + 1:,}–{hi:,} of {total:,}{more} · page {page + 1} of "
                f"{self.pages}")

    def write_csv(self, path: Path) -> Path:
        """Every fetched row (not just the page) as a CSV file."""
        return write_csv(path, self.columns, [self.rows]).path

    def chart_spec(self) -> dict[str, Any] | None:
        return self.chart if self.chart is not None else chart_spec(self.columns, self.rows)


def download_label(result: Result) -> str:
    """The Download button's label: which rows its CSV holds."""
    if result.exported is not None:
        which = "first" if result.exported.truncated else "all"
        return f"⬇ Download CSV ({which} {result.exported.rows:,} rows)"
    if result.truncated:
        return f"⬇ Download CSV (the {len(result.rows):,} rows shown)"
    return "⬇ Download CSV"


def pretty_sql(sql: str, dialect: str) -> str:
    """SQL laid out on several lines for the editor (unchanged when it does not parse)."""
    try:
        return sqlglot.transpile(sql, read=dialect, write=dialect, pretty=True)[0]
    except (SqlglotError, IndexError):
        return sql


def _unique(columns: list[str]) -> list[str]:
    """Column labels made unique (``count``, ``count_2``): DataFrames need distinct names."""
    seen: dict[str, int] = {}
    out = []
    for name in columns:
        n = seen.get(name, 0) + 1
        seen[name] = n
        out.append(name if n == 1 else f"{name}_{n}")
    return out


def format_number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.2f}"
    return str(value)


@dataclass(slots=True)
class ChartView:
    """What to draw: ``kind`` is bar, line, scatter, number or none."""

    kind: str
    frame: pd.DataFrame | None = None
    x: str | None = None
    y: str | None = None
    color: str | None = None
    title: str = ""
    markdown: str = ""
    sort: list[str] | None = None
    y_lim: list[float] | None = None  # bars start at zero (one bar would have no height)


def chart_view(result: Result | None) -> ChartView:
    """Turn the result's chart spec into data for a native plot, or big Markdown for a number."""
    spec = result.chart_spec() if result is not None else None
    if result is None or not spec:
        return ChartView("none")
    kind = spec.get("type")
    title = str(spec.get("title") or "")
    if kind == "number":
        # an HTML block (no Markdown inside): the label, a column name, is escaped as HTML
        label = html.escape(str(spec.get("label") or title))
        value = html.escape(format_number(spec.get("value")))
        return ChartView("number", title=title,
                         markdown=f"<div class='tc-number'>{value}"
                                  f"</div><div class='tc-number-label'>{label}</div>")
    x, y, color = spec.get("x"), spec.get("y"), spec.get("color")
    cols = _unique(result.columns)
    if kind not in ("bar", "line", "scatter") or x not in cols or y not in cols:
        return ChartView("none")
    keep = [c for c in dict.fromkeys([x, y, color]) if c]
    frame = result.frame()[keep].copy()
    sort, y_lim = None, None
    if kind == "bar":
        frame[x] = frame[x].astype(str)
        sort = list(dict.fromkeys(frame[x].tolist()))
        values = [float(v) for v in frame[y].tolist() if isinstance(v, int | float)
                  and math.isfinite(v)]
        if values:
            low, high = min(0.0, min(values)), max(0.0, max(values))
            y_lim = [low * 1.05, high * 1.05] if low != high else None
    if color:
        frame[color] = frame[color].astype(str)
    return ChartView(kind, frame=frame, x=x, y=y, color=color or None, title=title, sort=sort,
                     y_lim=y_lim)

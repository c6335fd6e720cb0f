"""A query result on screen: pages, the "showing N of M" line, the CSV file and the chart.

The chart is built from the declarative spec (``tablechat.chart``) as a static SVG
(``svgchart``), never by running generated code; a single number is shown in large type.
Numbers are formatted one way (``formats``) in the table, the chart and the big number.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlglot
from sqlglot.errors import SqlglotError

from ..chart import chart_spec
from ..export import Export, write_csv
from . import formats

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
    question: str = ""  # what was asked (or the SQL run): names the CSV
    csv: Path | None = None  # the CSV of the rows shown, once written (reused when reshown)

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

    def page(self, page: int, units: Mapping[str, str] | None = None
             ) -> tuple[pd.DataFrame, str, int]:
        """Rows of page ``page`` (clamped, 0-based) formatted as text (``formats``), the line
        saying what is shown, the page."""
        page = min(max(page, 0), self.pages - 1)
        lo = page * PAGE_SIZE
        rows = self.rows[lo: lo + PAGE_SIZE]
        cells = formats.table(self.columns, rows, units or {})
        return pd.DataFrame(cells, columns=_unique(self.columns)), self.info(page), page

    def info(self, page: int = 0) -> str:
        total = len(self.rows)
        more = ""
        if self.truncated and self.exported is not None:
            found, cut = self.exported.rows, self.exported.truncated
            more = (f" (cut at the row cap of {total:,}: the query found "
                    f"{found:,}{' or more' if cut else ''} rows; the CSV has "
                    f"{'the first' if cut else 'all'} {found:,})")
        elif self.truncated:
            more = (f" (cut at the row cap of {total:,}: the query found more"
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
        """The answer's chart spec, or one chosen from the result's shape."""
        return self.chart if self.chart is not None else chart_spec(self.columns, self.rows)

    def csv_name(self) -> str:
        """A file name from the question: "Revenue by region" → ``revenue-by-region``."""
        return slug(self.question) or "result"


def slug(text: str, limit: int = 60) -> str:
    """Lower-case words joined by hyphens, ASCII letters and digits only, at most ``limit``
    characters (a file name that is safe everywhere)."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    out = "-".join(words)[:limit].strip("-")
    return out


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


@dataclass(slots=True)
class ChartView:
    """What the side pane draws: ``kind`` is chart (an SVG), number or none."""

    kind: str
    html: str = ""
    markdown: str = ""


def chart_view(result: Result | None, units: Mapping[str, str] | None = None) -> ChartView:
    """The result's chart as SVG, or a single number in large type."""
    from .svgchart import render  # svgchart needs this module's neighbours, not the reverse

    spec = result.chart_spec() if result is not None else None
    if result is None or not spec:
        return ChartView("none")
    units = units or {}
    if spec.get("type") == "number":
        # an HTML block (no Markdown inside): the label, a column name, is escaped as HTML
        label_text = str(spec.get("label") or spec.get("title") or "")
        label = html.escape(label_text)
        value = html.escape(formats.cell(spec.get("value"), label_text, units))
        return ChartView("number",
                         markdown=f"<div class='tc-number'>{value}"
                                  f"</div><div class='tc-number-label'>{label}</div>")
    svg = render(spec, result.columns, result.rows, units)
    return ChartView("chart", html=f'<div class="tc-side-chart">{svg}</div>') if svg else \
        ChartView("none")

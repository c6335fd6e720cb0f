"""An answer's work inside its chat message (issue 12): its SQL, a small table and its chart,
each in a collapsible ``<details>`` block as querychat shows them, so every earlier answer
keeps its own result in the conversation.

Gradio's Chatbot sanitizes HTML but keeps ``<details>``, tables and inline SVG; a Gradio
component inside a message does not load (a native plot 404s) and a ``gr.Dataframe`` renders
empty, so the table is HTML and the chart an SVG (``svgchart``). Every value from the data or
the model goes through ``markup.html_text`` / ``markup.code_block``: shown, never rendered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import formats, svgchart
from .markup import code_block, html_text
from .results import Result

MESSAGE_ROWS = 10  # rows in the message; the whole result is in the side pane and the CSV


def table_html(result: Result, units: Mapping[str, str], limit: int = MESSAGE_ROWS) -> str:
    """The first ``limit`` rows as one line of HTML (numbers formatted, right-aligned)."""
    rows = result.rows[:limit]
    cells = formats.table(result.columns, rows, units)
    numeric = [any(formats.is_number(r[i]) for r in rows) and not formats.is_year_column(c)
               and not formats.is_month_column(c, [r[i] for r in rows])
               for i, c in enumerate(result.columns)]
    head = "".join(f"<th>{html_text(c)}</th>" for c in result.columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="{"num" if numeric[i] else "txt"}">{html_text(v)}</td>'
                         for i, v in enumerate(r)) + "</tr>" for r in cells)
    return (f'<div class="tc-msg-table"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def rows_summary(result: Result) -> str:
    """"5 rows", "the first 10 of 1,000 rows", "no rows"."""
    n = len(result.rows)
    if n == 0:
        return "no rows"
    total = f"{n:,}{' or more' if result.truncated else ''} row{'s' if n != 1 else ''}"
    return total if n <= MESSAGE_ROWS else f"the first {MESSAGE_ROWS} of {total}"


def work(sql: str | None, result: Result | None, units: Mapping[str, str],
         *, chart_open: bool = True) -> str:
    """The Markdown/HTML of an answer's work: SQL, table and chart, each collapsible."""
    parts: list[str] = []
    if sql:
        parts.append('<details class="tc-work tc-work-sql"><summary>SQL</summary>\n\n'
                     f"{code_block(sql, 'sql')}\n\n</details>")
    if result is None:
        return "\n\n".join(parts)
    if result.columns:
        parts.append('<details class="tc-work tc-work-table"><summary>Table · '
                     f"{html_text(rows_summary(result))}</summary>"
                     f"{table_html(result, units)}</details>")
    svg = chart_svg(result, units)
    if svg:
        opened = " open" if chart_open else ""
        parts.append(f'<details class="tc-work tc-work-chart"{opened}><summary>Chart'
                     f'</summary><div class="tc-msg-chart">{svg}</div></details>')
    return "\n\n".join(parts)


def chart_svg(result: Result | None, units: Mapping[str, str]) -> str:
    """The result's chart as SVG ("" for none, or for a single number)."""
    if result is None:
        return ""
    spec: Any = result.chart_spec()
    return svgchart.render(spec, result.columns, result.rows, units)

"""A result's chart as a small static SVG, drawn from the declarative spec (``tablechat.chart``).

Why not Gradio's native plots: after a run of edited SQL their axes read "undefined" (issue 12,
6 of 6 times), hidden plots threw "Cannot read properties of null (reading 'offsetWidth')" in
the console, month numbers and years were drawn as 1.0 … 12.0 and 2,019, and labels overlapped
on a phone; inside a chat message they do not load at all. This SVG is the same in the answer
and in the side pane, needs no script, and scales to the width it gets: bars are horizontal
(labels never collide), time axes show at most six labels (years as years, months by name), a
legend names every series, axis titles are the column names.

Every text in it comes from the data and is escaped (``markup.html_text``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from . import formats
from .markup import html_text

WIDTH = 320
PALETTE = ("#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04",
           "#db2777")
MAX_BARS = 20
MAX_SERIES = len(PALETTE)
MAX_TICKS = 6
LABEL_CHARS = 18
CHAR_PX = 6.0  # a 10 px label's average character width, rounded up
TICK_GAP_PX = 8.0


def _clip(label: str, n: int = LABEL_CHARS) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def _t(x: float, y: float, label: str, *, anchor: str = "start", size: int = 11,
       cls: str = "", bold: bool = False) -> str:
    weight = ' font-weight="600"' if bold else ""
    klass = f' class="{cls}"' if cls else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"'
            f'{weight}{klass} fill="currentColor">{html_text(label)}</text>')


def _svg(height: float, body: list[str], title: str) -> str:
    # width and height in pixels: the Chatbot's sanitizer drops viewBox (measured), so in a
    # message the chart is drawn at its own size (the page's CSS zooms it on a phone); the
    # side pane keeps viewBox and scales it to its width
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="tc-svg" viewBox="0 0 {WIDTH} '
            f'{height:.0f}" width="{WIDTH}" height="{height:.0f}" role="img" '
            f'aria-label="{html_text(title)}"><title>{html_text(title)}</title>'
            f'{"".join(body)}</svg>')


def render(spec: Mapping[str, Any] | None, columns: Sequence[str],
           rows: Sequence[Sequence[Any]], units: Mapping[str, str]) -> str:
    """The chart for ``spec`` over the result, as one line of SVG ("" when the spec does not
    fit the result: a column it names is missing, or it is a single number)."""
    if not spec or not rows:
        return ""
    kind = spec.get("type")
    x, y, color = spec.get("x"), spec.get("y"), spec.get("color")
    names = list(columns)
    if kind not in ("bar", "line", "scatter") or x not in names or y not in names:
        return ""
    xi, yi = names.index(x), names.index(y)
    ci = names.index(color) if color in names else None
    title = str(spec.get("title") or f"{y} by {x}")
    unit = formats.unit_for(str(y), units)
    if kind == "bar":
        return _bars(rows, xi, yi, str(x), str(y), title, unit)
    if kind == "line":
        return _lines(rows, xi, yi, ci, str(x), str(y), title, unit)
    return _scatter(rows, xi, yi, str(x), str(y), title, units)


def _value(v: Any) -> float | None:
    return float(v) if formats.is_number(v) and v == v else None


def _bars(rows: Sequence[Sequence[Any]], xi: int, yi: int, x: str, y: str, title: str,
          unit: str) -> str:
    data = [(formats.text(r[xi]), _value(r[yi])) for r in rows[:MAX_BARS]]
    data = [(k, v) for k, v in data if v is not None]
    if not data:
        return ""
    left, right, row_h, top = 118.0, 52.0, 22.0, 36.0
    lo = min(0.0, *(v for _, v in data if v is not None))
    hi = max(0.0, *(v for _, v in data if v is not None))
    span = (hi - lo) or 1.0
    area = WIDTH - left - right
    zero = left + (0 - lo) / span * area
    body = [_t(0, 15, _clip(title, 48), size=13, bold=True),
            _t(left, 30, y, size=10, cls="tc-axis")]
    for n, (label, v) in enumerate(data):
        assert v is not None
        ty = top + n * row_h
        x0, x1 = sorted((zero, left + (v - lo) / span * area))
        body.append(f'<rect x="{x0:.1f}" y="{ty:.1f}" width="{max(x1 - x0, 1):.1f}" '
                    f'height="{row_h - 6:.1f}" fill="{PALETTE[0]}"><title>'
                    f'{html_text(label)}: {html_text(formats.number(v, unit))}</title></rect>')
        body.append(_t(left - 6, ty + row_h - 10, _clip(label), anchor="end"))
        body.append(_t(x1 + 4, ty + row_h - 10, formats.short(v, unit), size=10))
    more = len(rows) - len(data)
    height = top + len(data) * row_h + 6
    if more > 0:
        body.append(_t(left, height + 8, f"and {more:,} more (see the table)", size=10))
        height += 16
    return _svg(height, body, title)


def _x_label(value: Any, x: str, all_values: Sequence[Any]) -> str:
    if formats.is_year_column(x):
        return formats.year(value)
    if formats.is_month_column(x, all_values):
        return formats.month(value)
    if isinstance(value, dt.date):
        days = {v.day for v in all_values if isinstance(v, dt.date)}
        if days == {1}:  # month starts: "Jan 2024"
            return f"{formats.MONTHS[value.month - 1]} {value.year}"
        return formats.text(value)
    if formats.is_number(value) and float(value).is_integer() and 1000 <= value <= 2999:
        return formats.year(value)  # years in a column not named so
    return formats.number(value) if formats.is_number(value) else formats.text(value)


def _ticks(n: int, width: float = math.inf, label_px: float = 0.0) -> list[int]:
    """At most MAX_TICKS evenly spread positions of ``n`` (first and last included), as many
    as fit side by side in ``width`` pixels with labels ``label_px`` wide (the first label
    starts at its point and the last ends at its own, the others are centred on theirs)."""
    for count in range(min(n, MAX_TICKS), 1, -1):
        picks = sorted({round(i * (n - 1) / (count - 1)) for i in range(count)})
        # the closest two neighbours, in pixels; an end label and its centred neighbour need
        # 1.5 labels of room, the two end labels alone two
        step = width * min(b - a for a, b in itertools.pairwise(picks)) / (n - 1)
        if step >= (2.0 if count == 2 else 1.5) * label_px + TICK_GAP_PX:
            return picks
    return [0, n - 1] if n > 1 else [0]


def _nice(lo: float, hi: float, parts: int = 3) -> tuple[float, float, float]:
    """The axis ``lo`` .. ``hi`` widened to round steps (1, 2, 2.5 or 5 times a power of ten),
    ``parts`` of them: gridlines at 0, 400, 800, 1.2k rather than 0, 395.33, 790.67 (issue 12:
    numbers people read)."""
    span = (hi - lo) / parts or 1.0
    power = 10 ** math.floor(math.log10(span))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= span - 1e-12)
    low = math.floor(lo / step + 1e-9) * step
    while low + step * parts < hi - 1e-9:  # a low bound rounded down may need a wider step
        step = next(m * power for m in (1, 2, 2.5, 5, 10, 20, 25, 50) if m * power > step)
        low = math.floor(lo / step + 1e-9) * step
    return low, low + step * parts, step


def _y_axis(lo: float, hi: float, top: float, bottom: float, left: float, unit: str
            ) -> list[str]:
    """Gridlines and labels for an axis already made round by :func:`_nice`."""
    body = []
    for i in range(4):
        v = lo + (hi - lo) * i / 3
        yy = bottom - (bottom - top) * i / 3
        body.append(f'<line x1="{left:.1f}" x2="{WIDTH - 8}" y1="{yy:.1f}" y2="{yy:.1f}" '
                    'stroke="currentColor" stroke-opacity="0.15"/>')
        body.append(_t(left - 4, yy + 3, formats.short(v, unit), anchor="end", size=10))
    return body


def _legend(names: list[str], y0: float) -> tuple[list[str], float]:
    """Colour keys, three to a line; the height they take."""
    body = []
    for n, name in enumerate(names):
        lx, ly = 8 + (n % 3) * 104, y0 + (n // 3) * 15
        body.append(f'<rect x="{lx}" y="{ly - 8:.1f}" width="10" height="10" '
                    f'fill="{PALETTE[n]}"/>')
        body.append(_t(lx + 14, ly + 1, _clip(name, 14), size=10, cls="tc-legend"))
    return body, ((len(names) + 2) // 3) * 15


def _lines(rows: Sequence[Sequence[Any]], xi: int, yi: int, ci: int | None, x: str, y: str,
           title: str, unit: str) -> str:
    xs = list(dict.fromkeys(r[xi] for r in rows if r[xi] is not None))
    with contextlib.suppress(TypeError):  # mixed types keep the query's order
        xs.sort()
    series: dict[str, dict[Any, float]] = {}
    for r in rows:
        v = _value(r[yi])
        if v is None or r[xi] is None:
            continue
        key = formats.text(r[ci]) if ci is not None else y
        if key not in series and len(series) >= MAX_SERIES:
            continue
        series.setdefault(key, {})[r[xi]] = v
    values = [v for s in series.values() for v in s.values()]
    if not values or len(xs) < 2:
        return ""
    body = [_t(0, 15, _clip(title, 48), size=13, bold=True)]
    top = 26.0
    if ci is not None:
        keys, used = _legend(list(series), top + 4)
        body += keys
        top += used + 2
    top += 14  # room for the measure's name above the axis
    left, bottom = 52.0, top + 150
    lo, hi = min(0.0, min(values)), max(values)
    lo, hi, _ = _nice(lo, hi if hi != lo else lo + 1)
    body += _y_axis(lo, hi, top, bottom, left, unit)
    pos = {v: left + (WIDTH - 16 - left) * i / (len(xs) - 1) for i, v in enumerate(xs)}
    for n, points in enumerate(series.values()):
        coords = " ".join(f"{pos[k]:.1f},{bottom - (v - lo) / (hi - lo) * (bottom - top):.1f}"
                          for k, v in sorted(points.items(), key=lambda kv: pos[kv[0]]))
        body.append(f'<polyline points="{coords}" fill="none" stroke="{PALETTE[n]}" '
                    'stroke-width="2"/>')
    labels = [_x_label(v, x, xs) for v in xs]
    ticks = _ticks(len(xs), WIDTH - 16 - left, CHAR_PX * max(len(t) for t in labels))
    for i in ticks:
        # the first label starts at the axis and the last ends at the edge: none crosses the
        # value labels or leaves the picture
        anchor = "start" if i == ticks[0] else "end" if i == ticks[-1] else "middle"
        body.append(_t(pos[xs[i]], bottom + 13, labels[i], anchor=anchor,
                       size=10, cls="tc-tick"))
    body.append(_t(left + (WIDTH - left) / 2, bottom + 28, x, anchor="middle", size=10,
                   cls="tc-axis"))
    body.append(_t(left, top - 4, y, size=10, cls="tc-axis"))
    return _svg(bottom + 34, body, title)


def _scatter(rows: Sequence[Sequence[Any]], xi: int, yi: int, x: str, y: str, title: str,
             units: Mapping[str, str]) -> str:
    pts = [(_value(r[xi]), _value(r[yi])) for r in rows]
    data = [(a, b) for a, b in pts if a is not None and b is not None]
    if len(data) < 2:
        return ""
    top, left, bottom = 38.0, 52.0, 188.0
    xlo, xhi = min(a for a, _ in data), max(a for a, _ in data)
    ylo, yhi = min(b for _, b in data), max(b for _, b in data)
    xhi, yhi = (xhi if xhi != xlo else xlo + 1), (yhi if yhi != ylo else ylo + 1)
    ylo, yhi, _ = _nice(ylo, yhi)
    body = [_t(0, 15, _clip(title, 48), size=13, bold=True)]
    body += _y_axis(ylo, yhi, top, bottom, left, formats.unit_for(y, units))
    right = WIDTH - 16
    for a, b in data[:1000]:
        cx = left + (a - xlo) / (xhi - xlo) * (right - left)
        cy = bottom - (b - ylo) / (yhi - ylo) * (bottom - top)
        body.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.5" fill="{PALETTE[0]}" '
                    'fill-opacity="0.7"/>')
    xu = formats.unit_for(x, units)
    for i in range(4):
        v = xlo + (xhi - xlo) * i / 3
        label = formats.year(v) if formats.is_year_column(x) else formats.short(v, xu)
        anchor = ("start", "middle", "middle", "end")[i]
        body.append(_t(left + (right - left) * i / 3, bottom + 13, label, anchor=anchor,
                       size=10, cls="tc-tick"))
    body.append(_t(left + (WIDTH - left) / 2, bottom + 28, x, anchor="middle", size=10,
                   cls="tc-axis"))
    body.append(_t(left, top - 4, y, size=10, cls="tc-axis"))
    return _svg(bottom + 34, body, title)

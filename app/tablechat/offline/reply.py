"""The offline engine's sentences: the answer built from a result, the honest "I can't", the
reply to small talk, and example questions drawn from the schema."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from .explain import cond_phrase, interpretation, measure_phrase, plural
from .index import SchemaIndex
from .intent import Intent
from .text import split_identifier, stem

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")


def fmt(value: Any, unit: str = "") -> str:
    """A number or value as people read it: 5,000 · 4.1M · 12.35 · 2024-03-01 · $1,250.00
    (``unit``: the currency the semantic layer gives the figure)."""
    if unit and isinstance(value, int | float) and not isinstance(value, bool):
        text = fmt(value)
        return f"-{unit}{text[1:]}" if text.startswith("-") else f"{unit}{text}"
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) < 10_000_000 else _short(value)
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        if abs(value) >= 1_000_000:
            return _short(value)
        if value == int(value) and abs(value) >= 100:
            return f"{int(value):,}"
        return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.3g}"
    if isinstance(value, dt.datetime) and value.time() == dt.time(0):
        return value.date().isoformat()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _short(value: float) -> str:
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if abs(value) >= div:
            return f"{value / div:.1f}{suffix}"
    return f"{value:,.0f}"


def _noun(text: str) -> str:
    """A table or column name as a lower-case noun: 'Order_Items' → 'order items'."""
    return text.replace("_", " ").lower()


def answer_text(intent: Intent, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                truncated: bool = False, index: SchemaIndex | None = None) -> str:
    """One or two sentences that state the result, its figures formatted one way (thousands
    separators, the metric's currency, years and months as people write them)."""
    if not rows:
        return "No rows match " + (_where(intent).strip() or "the question") + "."
    visible = [m for m in intent.measures if not m.hidden]
    where = _where(intent)
    if len(rows) == 1 and visible and not intent.groups:
        if len(visible) == 1 and len(rows[0]) == 1:
            m = visible[0]
            value = rows[0][0]
            if m.func == "count" and m.table:
                return f"There are {fmt(value)} {plural(_noun(m.table))}{where}."
            return f"The {measure_phrase(m)}{where} is {fmt(value, _unit(m, index))}."
        units = [""] * (len(columns) - len(visible)) + [_unit(m, index) for m in visible]
        parts = [f"{_noun(str(c))}: {fmt(v, u)}"
                 for c, v, u in zip(columns, rows[0], units, strict=False)]
        text = "; ".join(parts)
        return text[:1].upper() + text[1:] + (f" ({where.strip()})" if where else "") + "."
    shown = [g for g in intent.groups if g.show]
    if shown and visible and len(columns) > len(shown):
        return _group_text(intent, shown, visible[0], rows, where, _unit(visible[0], index))
    if shown and not visible and len(rows) >= 1:
        first = _label(rows[0], shown)
        noun = _group_noun(intent, shown[0])
        return f"The {noun} with the {_rank_word(intent)} {_rank_what(intent)} is {first}{where}."
    if len(rows) == 1 and len(columns) == 1:
        return f"The answer is {fmt(rows[0][0])}{where}."
    if len(rows) == 1:
        return "; ".join(f"{_noun(str(c))}: {fmt(v)}" for c, v in zip(columns, rows[0],
                                                                       strict=False)) + "."
    what = plural(_noun(intent.subject)) if intent.subject else "rows"
    if truncated:
        return f"Showing the first {fmt(len(rows))} {what}{where} (there are more)."
    return f"Found {fmt(len(rows))} {what}{where}."


def _unit(m: Any, index: SchemaIndex | None) -> str:
    """The currency or unit the semantic layer gives a metric ("" for anything else)."""
    if index is None or m.func != "metric":
        return ""
    info = index.metrics.get(m.metric)
    return info.metric.unit if info is not None else ""


def _group_noun(intent: Intent, g: Any) -> str:
    if g.bucket:
        return str(g.bucket)
    if g.key is not None or g.col.column.lower() in ("name", "title"):
        return _singular(_noun(g.col.table))
    return _noun(g.col.column)


def _singular(word: str) -> str:
    return stem(word.split()[-1]) if word else word


def _rank_word(intent: Intent) -> str:
    return "lowest" if intent.order and not intent.order[0].desc else "highest"


def _rank_what(intent: Intent) -> str:
    o = intent.order[0] if intent.order else None
    if o is not None and 0 <= o.measure < len(intent.measures):
        return intent.measures[o.measure].describe()
    return "value"


def _group_text(intent: Intent, shown: list[Any], m: Any, rows: Sequence[Sequence[Any]],
                where: str, unit: str = "") -> str:
    n = len(shown)
    label = _label(rows[0], shown)
    value = rows[0][n]
    noun = _group_noun(intent, shown[0])
    what = measure_phrase(m)
    if any(g.bucket for g in shown) and not (intent.order and intent.order[0].measure >= 0):
        last = rows[-1]
        periods = f"{len(rows)} {noun}s" if len(rows) != 1 else f"1 {noun}"
        return (f"{what[:1].upper()}{what[1:]} per {noun}{where}: {periods}, from "
                f"{label} ({fmt(value, unit)}) to {_label(last, shown)} "
                f"({fmt(last[n], unit)}).")
    word = _rank_word(intent)
    count = f"{len(rows)} {plural(noun)}"
    if intent.limit and intent.limit > 1:
        count = f"the top {len(rows)} {plural(noun)} shown"
    elif intent.limit == 1:
        return f"{label} has the {word} {what} ({fmt(value, unit)}){where}."
    return f"{label} has the {word} {what} ({fmt(value, unit)}) of {count}{where}."


def _label(row: Sequence[Any], groups: list[Any]) -> str:
    """A group's key as people write it: a year without separators, a month by its name."""
    out = []
    for i, v in enumerate(row[:max(1, len(groups))]):
        g = groups[i] if i < len(groups) else None
        bucket = getattr(g, "bucket", "")
        if bucket == "month" and isinstance(v, int) and 1 <= v <= 12:
            out.append(MONTHS[v - 1])
        elif bucket == "month" and isinstance(v, dt.date):
            out.append(f"{MONTHS[v.month - 1]} {v.year}")
        elif isinstance(v, int | float) and not isinstance(v, bool) and v == int(v) and \
                (bucket in ("year", "quarter") or (1000 <= v <= 2999 and _yearish(g))):
            out.append(str(int(v)))
        else:
            out.append(fmt(v))
    return ", ".join(out)


def _yearish(g: Any) -> bool:
    col = getattr(getattr(g, "col", None), "column", "")
    return "year" in str(col).lower()


def _where(intent: Intent) -> str:
    if not intent.conds:
        return ""
    return " for " + " and ".join(cond_phrase(c) for c in intent.conds)


def decline_text(intent: Intent | None, suggestions: Sequence[str] = ()) -> str:
    """The honest "I can't", for the person asking: the words not understood, what was, and
    rewordings that can be answered. No setup advice: that is for the admin (issue 12)."""
    unknown = intent.unknown if intent else []
    understood = intent.understood if intent else []
    missing = intent.missing if intent else []
    if unknown:
        words = ", ".join(f"“{w}”" for w in unknown[:5])
        parts = [f"I can't answer this reliably: I don't know what {words} "
                 f"{'means' if len(unknown) == 1 else 'mean'} here."]
    else:
        parts = ["I can't answer this reliably."]
        if missing:
            parts.append("I could not work out " + "; ".join(missing[:3]) + ".")
    if understood and intent is not None:
        reading = interpretation(intent).removeprefix("Read as: ").rstrip(".")
        parts.append(f"I did understand: {reading}.")
    if suggestions:
        parts.append("You could ask: " + " · ".join(f"“{q}”" for q in suggestions) + ".")
    return " ".join(parts)


def examples(index: SchemaIndex, n: int = 3) -> list[str]:
    """Questions this database can answer offline, built from its own names."""
    out: list[str] = []
    tables = sorted(index.tables.values(), key=lambda t: -t.row_count)
    if not tables:
        return out
    if index.metrics:
        metric = next(iter(index.metrics))
        out.append(f"What is the total {metric.replace('_', ' ')}?")
    first = tables[0]
    out.append(f"How many {' '.join(split_identifier(first.name))} are there?")
    for t in tables:
        cats = [c for c in t.columns.values() if c.family == "text" and c.distinct
                and 1 < c.distinct <= 30 and not c.keylike]
        nums = [c for c in t.columns.values() if c.family == "number" and not c.keylike
                and not c.yearlike]
        name = " ".join(split_identifier(t.name))
        if cats and nums:
            out.append(f"Average {' '.join(nums[0].words)} by {' '.join(cats[0].words)}")
            break
        if cats:
            out.append(f"Number of {name} per {' '.join(cats[0].words)}")
            break
    return out[:n]


def chat_text(index: SchemaIndex | None) -> str:
    lines = ["I'm tablechat's offline engine: I answer common questions about this database "
             "without a language model (counts, totals and averages, breakdowns by a column, "
             "top-N lists, filters on values in the data and date ranges)."]
    if index is not None:
        ex = examples(index)
        if ex:
            lines.append("Try: " + " · ".join(f'"{q}"' for q in ex) + ".")
    return " ".join(lines)

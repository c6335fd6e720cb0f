"""How the offline engine read a question, in words a person can check.

"Read as: revenue per month, orders in 2024 (revenue = quantity × unit price after discount,
excluding cancelled and returned orders)". Every answer carries this line, so a reading that
differs from what was meant is visible before anyone trusts the number (issue 12).
"""

from __future__ import annotations

from sqlglot import exp

from .index import SchemaIndex
from .intent import Cond, GroupKey, Intent, Measure
from .text import stem

BUCKET_WORDS = {"day": "day", "week": "week", "month": "month", "quarter": "quarter",
                "year": "year"}


def plural(word: str) -> str:
    """'review' → 'reviews', 'category' → 'categories' (a plural stays)."""
    if word.endswith("s"):
        return word
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + ("es" if word.endswith(("ch", "sh", "x")) else "s")


def _words(name: str) -> str:
    return name.replace("_", " ").lower()


def _thing(table: str) -> str:
    """'order_items' → 'order item': a table as the noun for one of its rows."""
    words = _words(table).split()
    return " ".join([*words[:-1], stem(words[-1])]) if words else table


def _column(table: str, column: str) -> str:
    """A column as people name it: 'name' of regions is 'region', 'order_date' stays."""
    if column.lower() in ("name", "title", "label"):
        return _thing(table)
    return _words(column)


def measure_phrase(m: Measure) -> str:
    """'revenue', 'number of customers', 'average unit price'."""
    if m.func == "metric":
        return _words(m.metric)
    if m.func == "count":
        return f"number of {plural(_words(m.table))}" if m.table else "number of rows"
    what = _column(m.col.table, m.col.column) if m.col else _words(m.table)
    words = {"count_distinct": "number of different", "avg": "average", "sum": "total",
             "min": "lowest", "max": "highest"}
    return f"{words.get(m.func, m.func)} {what}"


def group_phrase(g: GroupKey) -> str:
    """'per month', 'by region'."""
    if g.bucket:
        return f"per {BUCKET_WORDS.get(g.bucket, g.bucket)}"
    return f"by {_column(g.col.table, g.col.column)}"


def cond_phrase(c: Cond) -> str:
    """'orders in 2024', 'city is Tokyo', 'unit price > 45.5'."""
    if c.date is not None:
        when = {">": "after", ">=": "since", "<": "before", "<=": "up to",
                "!=": "outside"}.get(c.op, "in")
        return f"{_words(c.col.table)} {when} {c.date.text or 'the period'}"
    if c.op in ("=", "!=") and len(c.values) == 1 and isinstance(c.values[0], str):
        return f"{_column(c.col.table, c.col.column)} {'' if c.op == '=' else 'not '}" \
            f"{c.values[0]}"
    name = _column(c.col.table, c.col.column)
    if c.op in ("=", "!=", ">", "<", ">=", "<=") and len(c.values) == 1:
        value = c.values[0]
        shown = f"{int(value)}" if isinstance(value, float) and value == int(value) else value
        return f"{name} {c.op} {shown}"
    return c.describe().replace("_", " ")


def _order_phrase(intent: Intent) -> str:
    if not intent.order:
        return ""
    o = intent.order[0]
    if 0 <= o.measure < len(intent.measures):
        what = measure_phrase(intent.measures[o.measure])
    elif o.col is not None:
        what = _column(o.col.table, o.col.column)
    else:
        return ""
    if intent.limit:
        word = "top" if o.desc else "bottom"
        return f"{word} {intent.limit} by {what}" if intent.limit > 1 else \
            f"the one with the {'highest' if o.desc else 'lowest'} {what}"
    return f"sorted by {what}, {'highest' if o.desc else 'lowest'} first"


def definitions(intent: Intent, index: SchemaIndex | None) -> list[str]:
    """The semantic layer's definition of every metric the answer uses."""
    out: list[str] = []
    for m in intent.measures:
        info = index.metrics.get(m.metric) if index is not None and m.func == "metric" else None
        if info is None:
            continue
        rule = info.metric.definition or info.metric.description
        ruled = {c.name.lower() for c in info.filter.find_all(exp.Column)} \
            if info.filter is not None else set()
        own = [c for c in intent.conds if c.col.column.lower() in ruled]
        if own:  # the question's own condition replaced the metric's rule (build.py)
            rule = f"{info.metric.description or 'as defined'}, over the rows asked for"
            if info.metric.definition:
                rule = info.metric.definition.split(",")[0] + ", over the rows asked for " \
                    f"(not the usual rule: {info.metric.definition.split(',', 1)[-1].strip()})"
        if rule:
            out.append(f"{_words(m.metric)} = {rule[:1].lower()}{rule[1:].rstrip('.')}")
    return list(dict.fromkeys(out))


def interpretation(intent: Intent, index: SchemaIndex | None = None,
                   carried: list[str] | None = None) -> str:
    """One line: what is measured, over which rows, grouped and ordered how, which metric
    definitions apply and what was carried over from earlier questions."""
    parts: list[str] = []
    shown = [m for m in intent.measures if not m.hidden]
    if shown:
        head = " and ".join(measure_phrase(m) for m in shown)
        groups = [g for g in intent.groups if g.show or g.bucket]
        if groups:
            head += " " + " and ".join(group_phrase(g) for g in groups)
        parts.append(head)
    elif intent.groups:
        parts.append(" and ".join(_column(g.col.table, g.col.column) if not g.bucket
                                  else g.bucket for g in intent.groups))
    elif intent.columns:
        table = intent.columns[0].table
        cols = [_words(c.column) for c in intent.columns]
        parts.append(f"{plural(_words(table))}, showing {', '.join(cols)}")
    elif intent.subject:
        parts.append(plural(_words(intent.subject)))
    parts += [cond_phrase(c) for c in intent.conds]
    parts += [f"with {h.describe()}" for h in intent.having]
    if order := _order_phrase(intent):
        parts.append(order)
    if not any(parts) and intent.understood:  # e.g. a verified example's SQL (memory)
        parts = list(intent.understood)
    text = "Read as: " + ", ".join(p for p in parts if p)
    rules = definitions(intent, index)
    if rules:
        text += " (" + "; ".join(rules) + ")"
    if carried:
        text += ". Kept from your earlier question: " + ", ".join(carried)
    return text + "."

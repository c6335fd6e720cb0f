"""Follow-up questions: apply what a short message changes to the previous question's intent
("and in 2023?", "only for Europe", "break it down by month", "top 10 instead"), or to the
previous SQL when the previous answer came from elsewhere."""

from __future__ import annotations

import re
from dataclasses import replace

import sqlglot
from sqlglot import exp

from .build import SQLBuilder
from .explain import cond_phrase, group_phrase, measure_phrase
from .index import SchemaIndex
from .intent import Intent, OrderKey

MARKERS = re.compile(
    r"^\s*(and|what about|how about|same|only|just|now|instead|also|but|then|ok|okay|"
    r"break it down|split it|show it|do it|and for|for|excluding|without|top \d+|bottom \d+|"
    r"in \d{4}|by |per |limit)\b", re.IGNORECASE)
REFERS = re.compile(r"\b(instead|it|that|those|them|these|same|too|also|only)\b", re.IGNORECASE)


def marked_as_followup(text: str) -> bool:
    """The words themselves say the question continues the last one ("and in 2023?", "only
    Europe", "break it down by month", "top 10 instead")."""
    return bool(MARKERS.search(text) or REFERS.search(text))


STRONG = re.compile(r"^\s*(and|what about|how about|same|instead|also|but)\b", re.IGNORECASE)


def strongly_marked(text: str) -> bool:
    """Words that only make sense after another question ("what about", "instead", "it")."""
    return bool(STRONG.search(text) or REFERS.search(text))


def looks_like_followup(text: str) -> bool:
    """Marked as a follow-up, or too short to stand alone ("Europe?", "in 2023")."""
    return marked_as_followup(text) or len(text.split()) <= 4


def carried(prev: Intent, delta: Intent, merged: Intent) -> list[str]:
    """What ``merged`` keeps from the earlier question that the follow-up did not say itself,
    as phrases for people: carried context is stated, never silent (issue 12)."""
    out = [cond_phrase(c) for c in merged.conds if c not in delta.conds]
    if not delta.groups:
        out += [group_phrase(g) for g in merged.groups if g.show or g.bucket]
    if not [m for m in delta.measures if not m.hidden]:
        out += [measure_phrase(m) for m in merged.measures if not m.hidden]
    if merged.limit and not delta.limit:
        out.append(f"top {merged.limit}")
    return out


def has_changes(delta: Intent) -> bool:
    return bool(delta.conds or delta.groups or delta.limit or delta.measures or delta.order
                or delta.columns)


def merge(prev: Intent, delta: Intent) -> Intent:
    """``prev`` changed by what ``delta`` says: replaced filters, grouping, N or measures."""
    out = prev.copy()
    for cond in delta.conds:
        same_date = cond.date is not None
        out.conds = [c for c in out.conds if not (
            c.col == cond.col
            or (same_date and c.date is not None and c.col.table == cond.col.table))]
        out.conds.append(replace(cond, joiner="and"))
    visible = [m for m in delta.measures if not m.hidden]
    if visible and not delta.groups and delta.columns == []:
        kept_hidden = [m for m in out.measures if m.hidden]
        out.measures = visible + kept_hidden
        out.order = [OrderKey(o.desc, measure=0) if o.measure >= 0 else o for o in out.order]
    if delta.groups:
        out.groups = list(delta.groups)
        out.columns = []
        if not out.measures and delta.measures:
            out.measures = list(delta.measures)
        if not out.measures:
            out.measures = [m for m in delta.measures] or out.measures
        out.order = [o for o in delta.order]
        out.limit = delta.limit
        out.measures = [replace(m, hidden=False) for m in out.measures]
    elif delta.columns and not out.measures:
        out.columns = list(delta.columns)
    if delta.limit:
        out.limit = delta.limit
        if delta.order:
            out.order = list(delta.order)
        elif not out.order and out.measures:
            out.order = [OrderKey(True, measure=0)]
    elif delta.order and not delta.groups:
        out.order = list(delta.order)
    out.confidence = min(prev.confidence, delta.confidence)
    out.understood = out.describe()
    out.missing = list(delta.missing)
    return out


def apply_to_sql(sql: str, delta: Intent, index: SchemaIndex) -> str | None:
    """Add the follow-up's filters and N to a previous SQL statement (any engine wrote it)."""
    if delta.groups or delta.measures or delta.columns:
        return None
    try:
        tree = sqlglot.parse_one(sql, read=index.dialect)
    except sqlglot.errors.ParseError:
        return None
    if not isinstance(tree, exp.Select):
        return None
    aliases: dict[str, str] = {}
    for t in tree.find_all(exp.Table):
        aliases[t.name.lower()] = t.alias_or_name
    builder = SQLBuilder(index)
    conds: list[exp.Expr] = []
    for cond in delta.conds:
        alias = aliases.get(cond.col.table.lower())
        if alias is None:
            return None
        builder.qualify = False
        expr = builder.cond_expr(cond)
        for col in expr.find_all(exp.Column):
            col.set("table", exp.to_identifier(alias))
        conds.append(expr)
    if not conds and not delta.limit:
        return None
    for c in conds:
        tree = tree.where(c, copy=False)
    if delta.limit:
        tree = tree.limit(delta.limit, copy=False)
    return tree.sql(dialect=index.dialect)

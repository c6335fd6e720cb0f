"""Small pieces of SQL built with sqlglot: quoted names, comparisons, date ranges."""

from __future__ import annotations

import re
from functools import lru_cache

import sqlglot
from sqlglot import exp

from .intent import DateSpec

_SAFE = re.compile(r"[a-z_][a-z0-9_]*")


class PlanError(Exception):
    """The intent cannot become SQL (no join path, an unknown column)."""


@lru_cache(maxsize=16)
def _keywords(dialect: str) -> frozenset[str]:
    try:
        tok = sqlglot.Dialect.get_or_raise(dialect).tokenizer_class
        return frozenset(k.upper() for k in tok.KEYWORDS)
    except (ValueError, AttributeError):
        return frozenset()


def ident(name: str, dialect: str) -> exp.Identifier:
    quoted = not _SAFE.fullmatch(name) or name.upper() in _keywords(dialect)
    return exp.to_identifier(name, quoted=quoted)


def alias_name(text: str) -> str:
    clean = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")
    return clean or "value"


def _compare(op: str, left: exp.Expr, right: exp.Expr) -> exp.Expr:
    node = {"=": exp.EQ, "!=": exp.NEQ, ">": exp.GT, "<": exp.LT, ">=": exp.GTE,
            "<=": exp.LTE}[op]
    return node(this=left, expression=right)


def _date_range(op: str, col: exp.Expr, spec: DateSpec, lit: object) -> exp.Expr:
    make = lit  # callable turning a date into a literal
    assert callable(make)
    start = make(spec.start) if spec.start else None
    end = make(spec.end) if spec.end else None
    if op in ("in", "=", "!=", "between") and start is not None and end is not None:
        inside = exp.and_(exp.GTE(this=col, expression=start),
                          exp.LT(this=col.copy(), expression=end))
        return exp.Not(this=exp.paren(inside)) if op == "!=" else inside
    if op == ">" and end is not None:
        return exp.GTE(this=col, expression=end)
    if op == ">=" and start is not None:
        return exp.GTE(this=col, expression=start)
    if op == "<" and start is not None:
        return exp.LT(this=col, expression=start)
    if op == "<=" and end is not None:
        return exp.LT(this=col, expression=end)
    raise PlanError(f"cannot compare a date with {op}")

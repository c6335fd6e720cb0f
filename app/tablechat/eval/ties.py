"""Ties under ORDER BY: a sorted gold result fixes the order of rows only between different
sort keys. Rows with equal keys may come in any order (DuckDB's parallel GROUP BY and sort
give them in varying order from run to run), and a LIMIT that cuts through a run of equal keys
may keep any of them.

To know where the ties are, the gold query is run once more with its ORDER BY expressions
appended to the SELECT list and its LIMIT removed (:func:`order_key_query`); then
:func:`compare_with_ties` accepts a prediction whose rows follow the gold key order, in any
order within a run of equal keys, and, where the LIMIT cuts a run, any rows of that run.
Only used when the plain ordered comparison fails, so a correct answer costs nothing extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from .compare import (
    MATCHING_LIMIT,
    Comparison,
    _normalize_rows,
    _parse,
    _unwrap,
    compare_results,
    match_all,
    rows_equal,
)

KEY_PREFIX = "__tablechat_order_key_"


@dataclass(frozen=True, slots=True)
class KeyedQuery:
    """The gold query with its sort keys as trailing columns, and without its LIMIT."""

    sql: str
    keys: int  # how many trailing key columns
    limit: int | None  # the gold's LIMIT, if any


def _projection_for(key: exp.Expr, projections: list[exp.Expr]) -> exp.Expr | None:
    """The SELECT item an ORDER BY key names (ordinal, alias or the same expression)."""
    if isinstance(key, exp.Literal) and key.is_int:
        index = int(key.name) - 1
        return projections[index] if 0 <= index < len(projections) else None
    named = isinstance(key, exp.Column) and not key.table
    for item in projections:
        if named and isinstance(item, exp.Alias) and item.alias.lower() == key.name.lower():
            return item
        if (item.unalias() if isinstance(item, exp.Alias) else item) == key:
            return item
    return None


def order_key_query(sql: str, dialect: str = "duckdb") -> KeyedQuery | None:
    """``sql`` rewritten to return its sort keys too; None when that is not safely possible
    (set operations, OFFSET, a non-literal LIMIT, DISTINCT with keys outside the SELECT list,
    ``SELECT *``)."""
    tree = _parse(sql, dialect)
    if tree is None:
        return None
    top = _unwrap(tree).copy()
    if not isinstance(top, exp.Select) or top.args.get("offset") is not None:
        return None
    order = top.args.get("order")
    if order is None:
        return None
    projections = list(top.expressions)
    if any(isinstance(p, exp.Star) or (isinstance(p, exp.Column) and p.is_star)
           for p in projections):
        return None
    limit: int | None = None
    limit_node = top.args.get("limit")
    if limit_node is not None:
        value = limit_node.expression if isinstance(limit_node, exp.Limit) else None
        if not (isinstance(value, exp.Literal) and value.is_int):
            return None
        limit = int(value.name)
        top.set("limit", None)
    keys: list[exp.Expr] = []
    for ordered in order.expressions:
        key = ordered.this
        item = _projection_for(key, projections)
        if item is not None:
            key = item.unalias() if isinstance(item, exp.Alias) else item
        elif top.args.get("distinct") is not None:
            return None  # an extra column would change which rows are distinct
        keys.append(key.copy())
    for i, key in enumerate(keys):
        top.append("expressions", exp.alias_(key, f"{KEY_PREFIX}{i}"))
    return KeyedQuery(top.sql(dialect=dialect), len(keys), limit)


def _contains_all(pool: list[tuple[Any, ...]], rows: list[tuple[Any, ...]]) -> bool:
    """Every row of ``rows`` matches a distinct row of ``pool`` (a sub-multiset)."""
    return len(pool) <= MATCHING_LIMIT and match_all(rows, pool)


def compare_with_ties(
    keyed_gold: Sequence[Sequence[Any]],
    keys: int,
    predicted: Sequence[Sequence[Any]],
    *,
    limit: int | None = None,
) -> Comparison:
    """Compare ``predicted`` with a sorted gold result given with ``keys`` trailing key
    columns and without its ``limit``; rows may be permuted within runs of equal keys."""
    rows = _normalize_rows(keyed_gold)
    pred = _normalize_rows(predicted)
    expected = len(rows) if limit is None else min(limit, len(rows))
    if len(pred) != expected:
        return Comparison(False, f"row count differs: gold {expected}, predicted {len(pred)}")
    pos = start = 0
    while pos < expected:
        end = start + 1
        while end < len(rows) and rows_equal(rows[end][-keys:], rows[start][-keys:]):
            end += 1
        run = [r[:-keys] for r in rows[start:end]]
        take = min(len(run), expected - pos)
        segment = pred[pos:pos + take]
        if take == len(run):
            verdict = compare_results(run, segment)
            if not verdict.equal:
                return Comparison(False, f"rows {pos + 1}-{pos + take} differ (ordered, "
                                         f"ties allowed): {verdict.reason}")
        elif not _contains_all(run, segment):
            return Comparison(False, f"rows {pos + 1}-{pos + take} are not among the tied rows "
                                     "the LIMIT cuts through")
        pos += take
        start = end
    return Comparison(True)

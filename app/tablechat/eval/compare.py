"""Execution accuracy: compare two query results, and read what matters from the gold SQL.

A prediction is right when its rows equal the gold rows as a multiset (as a list when the gold
query has a top-level ORDER BY). Values are compared, never column names; column *order* is
kept (the usual Spider execution-accuracy rule), so ``SELECT a, b`` and ``SELECT b, a`` differ.
:func:`column_permutations` gives the orders Spider's test-suite evaluation also accepts; the
harness reports both verdicts, labelled.

Value rules: numbers compare with a tolerance (relative 1e-6, absolute 1e-9), so an integer
equals the same float and a ``Decimal`` equals its float; ``NULL`` equals ``NULL``; NaN equals
NaN; strings compare exactly (no trimming, no case folding); dates and other values by equality.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from ..sql.database import plain_value

REL_TOL = 1e-6
ABS_TOL = 1e-9
# Above this many rows an unordered comparison that fails after sorting is not retried with
# the quadratic matching (sorting already pairs every row whose values are not near-ties).
MATCHING_LIMIT = 2000

KINDS = ("nested", "join", "group_by", "order_limit", "aggregate", "filter", "simple")


@dataclass(frozen=True, slots=True)
class Comparison:
    """The verdict, and for a mismatch a short reason a person can read."""

    equal: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.equal


def normalize_value(value: Any) -> Any:
    """One value as the comparison sees it: the database layer's plain value, lists → tuples."""
    if isinstance(value, list | tuple):
        return tuple(normalize_value(v) for v in value)
    return plain_value(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float)


def values_equal(a: Any, b: Any) -> bool:
    """Two (normalized) values are the same answer."""
    if a is None or b is None:
        return a is None and b is None
    if _is_number(a) and _is_number(b):
        if isinstance(a, int) and isinstance(b, int):
            return bool(a == b)
        fa, fb = float(a), float(b)
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb)
        return math.isclose(fa, fb, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return rows_equal(a, b)
    if _is_number(a) or _is_number(b):
        return False  # a number never equals a string or a date
    return bool(a == b)


def rows_equal(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))


def _value_key(value: Any) -> tuple[Any, ...]:
    """A total order over mixed values, so equal multisets sort into the same sequence."""
    if value is None:
        return (0,)
    if _is_number(value):
        f = float(value)
        return (1, 1, 0.0) if math.isnan(f) else (1, 0, f)
    if isinstance(value, str):
        return (2, value)
    if isinstance(value, tuple):
        return (3, tuple(_value_key(v) for v in value))
    return (4, type(value).__name__, repr(value))


def _row_key(row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(_value_key(v) for v in row)


def _normalize_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    return [tuple(normalize_value(v) for v in row) for row in rows]


def _show(row: Sequence[Any], width: int = 80) -> str:
    text = repr(tuple(row))
    return text if len(text) <= width else text[: width - 1] + "…"


def match_all(gold: list[tuple[Any, ...]], pred: list[tuple[Any, ...]]) -> bool:
    """Greedy matching of every gold row to a distinct equal predicted row (near-ties)."""
    left = list(pred)
    for row in gold:
        for i, candidate in enumerate(left):
            if rows_equal(row, candidate):
                left.pop(i)
                break
        else:
            return False
    return True


def compare_results(
    gold: Sequence[Sequence[Any]],
    predicted: Sequence[Sequence[Any]],
    *,
    ordered: bool = False,
) -> Comparison:
    """Compare two results (rows only: column names play no part).

    ``ordered``: compare as lists (the gold query sorts its output); otherwise as multisets.
    """
    g, p = _normalize_rows(gold), _normalize_rows(predicted)
    if len(g) != len(p):
        return Comparison(False, f"row count differs: gold {len(g)}, predicted {len(p)}")
    if not g:
        return Comparison(True)
    gw, pw = {len(r) for r in g}, {len(r) for r in p}
    if gw != pw:
        return Comparison(
            False, f"column count differs: gold {sorted(gw)}, predicted {sorted(pw)}"
        )
    if ordered:
        for i, (a, b) in enumerate(zip(g, p, strict=True)):
            if not rows_equal(a, b):
                return Comparison(
                    False, f"row {i + 1} differs (ordered): gold {_show(a)}, predicted {_show(b)}"
                )
        return Comparison(True)
    gs, ps = sorted(g, key=_row_key), sorted(p, key=_row_key)
    first_diff = next(
        (i for i, (a, b) in enumerate(zip(gs, ps, strict=True)) if not rows_equal(a, b)), None
    )
    if first_diff is None:
        return Comparison(True)
    if len(g) <= MATCHING_LIMIT and match_all(g, p):
        return Comparison(True)
    a, b = gs[first_diff], ps[first_diff]
    return Comparison(False, f"rows differ: gold has {_show(a)}, predicted has {_show(b)}")


MAX_PERMUTED_COLUMNS = 8


def column_permutations(gold: Sequence[Sequence[Any]], predicted: Sequence[Sequence[Any]]
                        ) -> list[tuple[int, ...]]:
    """The orders of the predicted columns worth trying against the gold columns, as Spider's
    test-suite evaluation allows (``SELECT b, a`` answers ``SELECT a, b``).

    A predicted column can stand for a gold column only when the two hold the same multiset of
    values; the identity order is left out (the plain comparison already tried it). Empty
    when the widths differ or exceed :data:`MAX_PERMUTED_COLUMNS`."""
    g, p = _normalize_rows(gold), _normalize_rows(predicted)
    if not g or not p or len({len(r) for r in [*g, *p]}) != 1:
        return []
    width = len(g[0])
    if width < 2 or width > MAX_PERMUTED_COLUMNS:
        return []

    def column(rows: list[tuple[Any, ...]], i: int) -> list[tuple[Any, ...]]:
        return [(r[i],) for r in rows]

    fits = [[j for j in range(width)
             if compare_results(column(g, i), column(p, j), ordered=False).equal]
            for i in range(width)]
    out: list[tuple[int, ...]] = []

    def extend(prefix: tuple[int, ...]) -> None:
        if len(out) > 5000:  # many identical columns: enough orders to find a match
            return
        if len(prefix) == width:
            if prefix != tuple(range(width)):
                out.append(prefix)
            return
        for j in fits[len(prefix)]:
            if j not in prefix:
                extend((*prefix, j))

    extend(())
    return out


def permute(rows: Sequence[Sequence[Any]], order: tuple[int, ...]) -> list[tuple[Any, ...]]:
    """Each row with its columns in ``order`` (gold column i ← predicted column order[i])."""
    return [tuple(row[j] for j in order) for row in rows]


# -- reading the gold SQL ---------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def _parse(sql: str, dialect: str) -> exp.Expr | None:
    try:
        statements = sqlglot.parse(sql, read=dialect)
    except SqlglotError:
        return None
    if len(statements) != 1 or statements[0] is None:
        return None
    return statements[0]


def _unwrap(tree: exp.Expr) -> exp.Expr:
    while isinstance(tree, exp.Subquery) and not tree.args.get("order"):
        tree = tree.this
    return tree


def has_top_level_order_by(sql: str, dialect: str = "duckdb") -> bool:
    """The query sorts its final output (an ORDER BY inside a subquery or CTE does not count)."""
    tree = _parse(sql, dialect)
    if tree is None:
        return False
    return _unwrap(tree).args.get("order") is not None


def derive_kind(sql: str, dialect: str = "duckdb") -> str:
    """A coarse shape of a query, for the by-kind breakdown when a dataset gives none.

    First match wins: nested (subquery, CTE or set operation), join, group_by, order_limit
    (ORDER BY with LIMIT), aggregate, filter (WHERE), simple.
    """
    tree = _parse(sql, dialect)
    if tree is None:
        return "simple"
    top = _unwrap(tree)
    if isinstance(top, exp.SetOperation) or any(
        node is not top for node in top.find_all(exp.Query)
    ):
        return "nested"
    if top.find(exp.Join) is not None:
        return "join"
    if top.args.get("group") is not None:
        return "group_by"
    if top.args.get("order") is not None and top.args.get("limit") is not None:
        return "order_limit"
    if top.find(exp.AggFunc) is not None:
        return "aggregate"
    if top.args.get("where") is not None:
        return "filter"
    return "simple"

"""Bounds on the values a query may build, checked on its syntax tree before it runs.

Some DuckDB functions build one huge value from a short statement, and neither the query
timeout nor ``memory_limit`` stops them: ``SELECT length(repeat('x', 2000000000))`` ran 26-40 s
against a 5 s timeout and reached 3.9-4.1 GB against a 1 GB limit, and an interrupt is not
honoured inside ``repeat`` (issue 11, class 3). So the guard bounds them here, statically:

- ``repeat``, ``lpad``/``rpad``, ``space``, ``bar``, ``list_resize``/``array_resize`` and
  ``printf``/``format`` widths need constant sizes, and the value they build (nested ones
  multiplied out) must fit in ``max_cell_bytes``;
- ``range``/``generate_series`` used as a value (a list, e.g. inside ``unnest``) need constant
  bounds and at most ``max_cell_bytes / 8`` elements; as a table in ``FROM`` they stream rows,
  which the query timeout interrupts, and are left alone;
- an operand whose size the tree does not tell (a column, a subquery, an aggregate) may be
  repeated at most :data:`MAX_UNKNOWN_FACTOR` times in all.

Used by the SQL guard: ``check_value_bounds(tree, max_cell_bytes=...)`` raises
:class:`~tablechat.errors.UnsafeSQLError` with a one-line reason for the model.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlglot import exp

from ..errors import UnsafeSQLError

MAX_UNKNOWN_FACTOR = 16
_LIST_FUNCS = {"list_resize", "array_resize"}
_SECONDS = {"microsecond": 1e-6, "millisecond": 1e-3, "second": 1, "minute": 60,
            "hour": 3600, "day": 86400, "week": 604800, "month": 28 * 86400,
            "quarter": 89 * 86400, "year": 365 * 86400}
_PRINTF_WIDTH = re.compile(r"%[-+ 0#']*(\d*)(?:\.(\d+))?")
_FORMAT_WIDTH = re.compile(r"\{[^{}]*?:[^{}]*?(\d+)(?:\.(\d+))?[^{}]*\}")


class _TooBig(Exception):
    """A value over the bounds; its message is the reason."""


@dataclass(frozen=True, slots=True)
class _Size:
    """Most bytes a value holds: ``known`` plus ``factor`` copies of operands of unknown
    size."""

    known: int = 0
    factor: int = 0

    def __add__(self, other: _Size) -> _Size:
        return _Size(self.known + other.known, max(self.factor, other.factor))

    def times(self, n: int) -> _Size:
        return _Size(self.known * n, self.factor * n)


_OPAQUE = _Size(0, 1)


def constant_int(node: exp.Expr | None) -> int | None:
    """The integer a constant expression evaluates to, or None when it is not constant."""
    if node is None:
        return None
    if isinstance(node, exp.Paren | exp.Cast | exp.TryCast):
        return constant_int(node.this)
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return int(float(node.this))
        except (ValueError, OverflowError):
            return None
    if isinstance(node, exp.Neg):
        value = constant_int(node.this)
        return None if value is None else -value
    if isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div | exp.IntDiv):
        left, right = constant_int(node.this), constant_int(node.expression)
        if left is None or right is None:
            return None
        if isinstance(node, exp.Add):
            return left + right
        if isinstance(node, exp.Sub):
            return left - right
        if isinstance(node, exp.Mul):
            return left * right
        return left // right if right else None
    return None


def _constant_time(node: exp.Expr | None) -> float | None:
    """Seconds since the epoch of a constant date or timestamp (a cast string literal)."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Cast | exp.TryCast) and isinstance(node.this, exp.Literal):
        node = node.this
    if isinstance(node, exp.Literal) and node.is_string:
        try:
            value = dt.datetime.fromisoformat(node.this)
        except ValueError:
            return None
        return value.replace(tzinfo=value.tzinfo or dt.UTC).timestamp()
    return None


def _interval_seconds(node: exp.Expr | None) -> float | None:
    """Seconds in a constant interval (``INTERVAL 1 DAY``, ``INTERVAL '2 hours'``); months and
    years count at their shortest, so a series is never under-counted."""
    if not isinstance(node, exp.Interval):
        return None
    if isinstance(node.this, exp.Literal):
        parts = str(node.this.this).split()
    else:
        value = constant_int(node.this)
        parts = [] if value is None else [str(value)]
    unit = node.unit.name if node.unit else (parts[1] if len(parts) > 1 else "")
    seconds = _SECONDS.get(unit.lower().rstrip("s"))
    if not parts or seconds is None:
        return None
    try:
        return abs(float(parts[0])) * seconds
    except ValueError:
        return None


def _series_length(node: exp.GenerateSeries) -> int | None:
    start, end, step = node.args.get("start"), node.args.get("end"), node.args.get("step")
    lo, hi = constant_int(start), constant_int(end)
    if lo is not None and hi is not None:
        by = constant_int(step) if step is not None else 1
        if not by:
            return None
        return max(0, (hi - lo) // by + 1)
    t0, t1 = _constant_time(start), _constant_time(end)
    if t0 is not None and t1 is not None:
        seconds = _interval_seconds(step) if step is not None else 86400.0
        if not seconds:
            return None
        return max(0, int((t1 - t0) / seconds) + 1)
    return None


def _is_row_source(node: exp.Expr) -> bool:
    """Whether a table function call stands in FROM/JOIN/LATERAL (it streams rows)."""
    return isinstance(node.parent, exp.Table | exp.Lateral)


def _width(fmt: exp.Expr, pattern: re.Pattern[str], name: str) -> int:
    if not isinstance(fmt, exp.Literal) or not fmt.is_string:
        raise _TooBig(f"{name}() needs a constant format string")
    widths = [int(d) for m in pattern.finditer(fmt.this) for d in m.groups() if d]
    return max(widths, default=0)


class _Sizer:
    def __init__(self, cap: int) -> None:
        self.cap = cap

    def check(self, size: _Size, name: str) -> _Size:
        if size.known > self.cap:
            raise _TooBig(f"{name}() would build a value of about {size.known:,} bytes; "
                          f"the most one value may hold is {self.cap:,}")
        if size.factor > MAX_UNKNOWN_FACTOR:
            raise _TooBig(f"{name}() repeats a value of unknown size {size.factor:,} times; "
                          f"at most {MAX_UNKNOWN_FACTOR} are allowed")
        return size

    def count(self, node: exp.Expr | None, name: str) -> int:
        value = constant_int(node)
        if value is None:
            raise _TooBig(f"the size argument of {name}() must be a constant number")
        return max(0, value)

    def size(self, node: exp.Expr) -> _Size:
        if isinstance(node, exp.Literal):
            return _Size(len(node.this) if node.is_string else 16)
        if isinstance(node, exp.Repeat):
            n = self.count(node.args.get("times"), "repeat")
            return self.check(self.size(node.this).times(n), "repeat")
        if isinstance(node, exp.Pad):
            fill = node.args.get("fill_pattern")
            wide = 1 if fill is None or (isinstance(fill, exp.Literal)
                                         and str(fill.this).isascii()) else 4
            name = "lpad" if node.args.get("is_left") else "rpad"
            self.size(node.this)
            return self.check(_Size(self.count(node.expression, name) * wide), name)
        if isinstance(node, exp.Space):
            return self.check(_Size(self.count(node.this, "space")), "space")
        if isinstance(node, exp.GenerateSeries) and not _is_row_source(node):
            length = _series_length(node)
            if length is None:
                raise _TooBig("range()/generate_series() used as a value needs constant bounds")
            return self.check(_Size(length * 8), "range()/generate_series")
        if isinstance(node, exp.Anonymous):
            return self._anonymous(node)
        if isinstance(node, exp.Format):
            width = _width(node.this, _FORMAT_WIDTH, "format")
            rest = sum((self.size(a) for a in node.expressions), _Size())
            return self.check(rest + _Size(width), "format")
        if isinstance(node, exp.Column | exp.Subquery | exp.AggFunc):
            self._children(node)  # an amplifier inside still counts
            return _OPAQUE
        return self._children(node)

    def _anonymous(self, node: exp.Anonymous) -> _Size:
        name = node.name.lower()
        args = node.expressions
        if name in _LIST_FUNCS and len(args) >= 2:
            n = self.count(args[1], name)
            fill = self.size(args[2]) if len(args) > 2 else _Size(16)
            return self.check(self.size(args[0]) + fill.times(n), name)
        if name == "bar" and len(args) >= 4:
            return self.check(_Size(self.count(args[3], name) * 3), name)
        if name == "printf" and args:
            width = _width(args[0], _PRINTF_WIDTH, "printf")
            rest = sum((self.size(a) for a in args[1:]), _Size())
            return self.check(rest + _Size(width), name)
        return self._children(node)

    def _children(self, node: exp.Expr) -> _Size:
        total = _Size()
        for child in node.iter_expressions():
            total = total + self.size(child)
        return total


def value_bound_problem(tree: exp.Expr, *, max_cell_bytes: int) -> str | None:
    """Why ``tree`` could build a value over ``max_cell_bytes`` bytes, or None when it cannot
    (as far as this module's functions go)."""
    try:
        _Sizer(max_cell_bytes).size(tree)
    except _TooBig as exc:
        return str(exc)
    except RecursionError:
        return "the statement is nested too deeply to check the size of its values"
    return None


def check_value_bounds(tree: exp.Expr, *, max_cell_bytes: int) -> None:
    """Raise :class:`UnsafeSQLError` when ``tree`` could build a value over
    ``max_cell_bytes`` bytes (see the module's docstring for the rules)."""
    problem = value_bound_problem(tree, max_cell_bytes=max_cell_bytes)
    if problem is not None:
        raise UnsafeSQLError(problem, sql=tree.sql(dialect="duckdb")[:200])


__all__ = ["MAX_UNKNOWN_FACTOR", "check_value_bounds", "constant_int", "value_bound_problem"]

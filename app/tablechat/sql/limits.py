"""Size bounds the guard applies before it parses deep (issue 11, classes 2 and 11).

A 1.5 MB statement of 45,000 ``UNION ALL`` took the guard 3.5 s and 371 MB, and DuckDB's
planner ran out of memory on it; 3,000 nested parentheses made sqlglot's recursive parser
raise ``RecursionError``. Each bound here is checked at the cheapest point that can see it:
characters before tokenizing, tokens and bracket nesting before parsing, node count and depth
during the one policy walk (before ``qualify``), series sizes on the literal arguments.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlglot import exp
from sqlglot.tokens import Token, TokenType

from ..errors import UnsafeSQLError

_OPEN = frozenset({TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE, TokenType.CASE})
_CLOSE = frozenset({TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE, TokenType.END})


@dataclass(frozen=True, slots=True)
class SQLLimits:
    """How large a statement the guard reads (``TABLECHAT_MAX_SQL_*``, docs/settings.md)."""

    max_chars: int = 20_000
    max_tokens: int = 4_000
    max_nodes: int = 4_000
    max_depth: int = 100
    max_series_rows: int = 1_000_000
    max_cell_bytes: int = 64 * 1024  # what one value may build (sql/bounds.py)

    @classmethod
    def from_settings(cls, settings: Any) -> SQLLimits:
        """The limits a :class:`~tablechat.config.Settings` object configures."""
        return cls(
            max_chars=settings.max_sql_chars,
            max_tokens=settings.max_sql_tokens,
            max_nodes=settings.max_sql_nodes,
            max_depth=settings.max_sql_depth,
            max_series_rows=settings.max_series_rows,
            max_cell_bytes=settings.result_max_cell_bytes,
        )

    def check_text(self, text: str) -> None:
        """Refuse a statement longer than ``max_chars`` before any work is spent on it."""
        if len(text) > self.max_chars:
            raise UnsafeSQLError(
                f"statement too long: {len(text):,} characters (at most {self.max_chars:,})",
                sql=text[:200],
            )

    def check_tokens(self, tokens: list[Token], text: str) -> None:
        """Refuse too many tokens or brackets (and CASE ... END) nested too deeply, before
        the recursive parser sees them."""
        if len(tokens) > self.max_tokens:
            raise UnsafeSQLError(
                f"statement too large: {len(tokens):,} tokens (at most {self.max_tokens:,})",
                sql=text[:200],
            )
        depth = deepest = 0
        for token in tokens:
            kind = token.token_type
            if kind in _OPEN:
                depth += 1
                if depth > deepest:
                    deepest = depth
            elif kind in _CLOSE:
                depth -= 1
        if deepest > self.max_depth:
            raise too_deep(self.max_depth, text)


def too_deep(limit: int, text: str) -> UnsafeSQLError:
    """The refusal for a statement nested deeper than ``limit``."""
    return UnsafeSQLError(f"statement nested too deeply (at most {limit} levels)", sql=text[:200])


# --- range / generate_series --------------------------------------------------------------------
# Allowed only with literal bounds whose size is known before running: range(10**12) in a
# subquery with an aggregate would otherwise scan until the timeout, and range() in the select
# list builds the whole list in memory.
_UNIT_SECONDS = {
    "microsecond": 1e-6, "millisecond": 1e-3, "second": 1, "minute": 60, "hour": 3600,
    "day": 86400, "week": 7 * 86400,
    # the shortest month and year: the count is an upper bound
    "month": 28 * 86400, "quarter": 89 * 86400, "year": 365 * 86400,
    "decade": 3652 * 86400, "century": 36524 * 86400, "millennium": 365242 * 86400,
}
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*?)s?\s*$")


def _number(node: exp.Expr | None) -> float | None:
    if isinstance(node, exp.Neg):
        value = _number(node.this)
        return None if value is None else -value
    if isinstance(node, exp.Paren):
        return _number(node.this)
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return float(node.name)
        except ValueError:
            return None
    return None


def _instant(node: exp.Expr | None) -> float | None:
    """Seconds since 1970 of a date/timestamp literal (``DATE '…'``, ``'…'::timestamp``)."""
    if isinstance(node, exp.Cast | exp.TryCast):
        node = node.this
    if not isinstance(node, exp.Literal) or not node.is_string:
        return None
    try:
        value = datetime.fromisoformat(node.name)
    except ValueError:
        try:
            value = datetime.combine(date.fromisoformat(node.name), datetime.min.time())
        except ValueError:
            return None
    return value.replace(tzinfo=None).timestamp()


def _step_seconds(node: exp.Expr | None) -> float | None:
    """Seconds in an interval literal (``INTERVAL 1 DAY``, ``INTERVAL '3 days'``,
    ``'1 day'::interval``); None when it is not one."""
    text = None
    if isinstance(node, exp.Interval):
        unit = node.args.get("unit")
        text = f"{node.this.name} {unit.name if unit is not None else ''}"
    elif isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal):
        text = node.this.name
    if text is None:
        return None
    m = _INTERVAL.match(text.lower())
    if m is None:
        return None
    unit = m.group(2) or "second"
    seconds = _UNIT_SECONDS.get(unit.rstrip("s") if unit not in _UNIT_SECONDS else unit)
    return None if seconds is None else float(m.group(1)) * seconds


def series_size(node: exp.Func) -> float | None:
    """How many values a range/generate_series call yields, or None when that is not known
    from its literal arguments."""
    if isinstance(node, exp.GenerateSeries | exp.ExplodingGenerateSeries):
        start, end, step = (node.args.get(k) for k in ("start", "end", "step"))
        exclusive = bool(node.args.get("is_end_exclusive"))
    else:  # an anonymous range(...)/generate_series(...) of a dialect sqlglot does not type
        args = list(node.expressions)
        if not 1 <= len(args) <= 3:
            return None
        if len(args) == 1:
            args.insert(0, exp.Literal.number(0))
        start, end, step = [*args, None][:3]
        exclusive = node.name.lower() == "range"
    lo, hi = _number(start), _number(end)
    if lo is not None and hi is not None:
        by = 1.0 if step is None else _number(step)
    else:
        lo, hi = _instant(start), _instant(end)
        by = None if step is None else _step_seconds(step)
    if lo is None or hi is None or by is None or by == 0 or not math.isfinite(hi - lo):
        return None
    span = (hi - lo) / by
    if span < 0:
        return 0
    return math.floor(span) + (0 if exclusive and span == math.floor(span) else 1)

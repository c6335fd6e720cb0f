"""The parsed meaning of a question: what to measure, over which rows, grouped and ordered how.

An :class:`Intent` is what the parser produces, what follow-ups modify and what ``build.py``
turns into SQL. It knows nothing of sqlglot.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any

from .text import stem


def _num(value: Any) -> str:
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value)


@dataclass(frozen=True, slots=True)
class Col:
    table: str
    column: str

    def __str__(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass(frozen=True, slots=True)
class DateSpec:
    """A period: [start, end) dates, or the last N units before the data's latest date, or a
    month / quarter of any year."""

    start: dt.date | None = None
    end: dt.date | None = None
    relative: tuple[int, str] | None = None
    part: tuple[str, int] | None = None  # ("month", 3): March of any year
    text: str = ""

    @property
    def year(self) -> int | None:
        """The calendar year when the period is exactly one."""
        if (self.start and self.end and self.start.month == 1 and self.start.day == 1
                and self.end == dt.date(self.start.year + 1, 1, 1)):
            return self.start.year
        return None


@dataclass(frozen=True, slots=True)
class Measure:
    func: str  # count, count_distinct, sum, avg, min, max, metric
    col: Col | None = None
    metric: str = ""
    table: str = ""  # the counted table for count
    hidden: bool = False  # computed for ordering only

    @property
    def label(self) -> str:
        if self.func == "metric":
            return self.metric
        if self.func == "count":
            return f"{self.table}_count" if self.table else "count"
        name = self.col.column if self.col else self.table
        prefix = {"count_distinct": "distinct", "avg": "average", "sum": "total",
                  "min": "min", "max": "max"}.get(self.func, self.func)
        return f"{prefix}_{name}".lower()

    def describe(self) -> str:
        if self.func == "metric":
            return self.metric.replace("_", " ")
        if self.func == "count":
            return f"number of {self.table}"
        what = self.col.column if self.col else self.table
        words = {"count_distinct": "number of distinct", "avg": "average", "sum": "total",
                 "min": "minimum", "max": "maximum"}
        return f"{words.get(self.func, self.func)} {what}"


@dataclass(frozen=True, slots=True)
class Cond:
    col: Col
    op: str  # = != > < >= <= between in not_in like date
    values: tuple[Any, ...] = ()
    date: DateSpec | None = None
    like: str = ""  # contains, prefix, suffix
    joiner: str = "and"  # how it joins the condition before it ("or" binds tighter)

    def describe(self) -> str:
        name = self.col.column
        if name.lower() in ("name", "title", "label"):
            name = stem(self.col.table.lower())
        if self.date is not None:
            when = {">": "after", ">=": "since", "<": "before", "<=": "up to",
                    "!=": "outside"}.get(self.op, "in")
            return f"{name} {when} {self.date.text or 'the period'}"
        if self.op == "like":
            return f"{name} {self.like} {self.values[0]!r}"
        if self.op == "between":
            return f"{name} between {_num(self.values[0])} and {_num(self.values[1])}"
        if self.op in ("in", "not_in"):
            vals = " or ".join(repr(v) if isinstance(v, str) else _num(v) for v in self.values)
            return f"{name} {'is not' if self.op == 'not_in' else 'is'} {vals}"
        value = self.values[0] if self.values else None
        shown = repr(value) if isinstance(value, str) else _num(value)
        return f"{name} {self.op} {shown}"


@dataclass(frozen=True, slots=True)
class Having:
    table: str  # count of these rows per group
    op: str
    value: float

    def describe(self) -> str:
        return f"{self.op} {self.value:g} {self.table}"


@dataclass(frozen=True, slots=True)
class GroupKey:
    col: Col
    bucket: str = ""  # year, month, quarter, week, day for dates
    key: Col | None = None  # the entity key when grouping rows of a table by its label
    show: bool = True

    def describe(self) -> str:
        return f"{self.bucket} of {self.col.column}" if self.bucket else self.col.column


@dataclass(frozen=True, slots=True)
class OrderKey:
    desc: bool
    measure: int = -1  # index into Intent.measures
    col: Col | None = None


@dataclass(slots=True)
class Intent:
    subject: str = ""
    measures: list[Measure] = field(default_factory=list)
    columns: list[Col] = field(default_factory=list)
    conds: list[Cond] = field(default_factory=list)
    groups: list[GroupKey] = field(default_factory=list)
    having: list[Having] = field(default_factory=list)
    order: list[OrderKey] = field(default_factory=list)
    limit: int | None = None
    distinct: bool = False
    joins: list[str] = field(default_factory=list)  # tables named only as context
    confidence: float = 0.0
    understood: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # words of the question left unexplained

    def copy(self) -> Intent:
        return replace(self, measures=list(self.measures), columns=list(self.columns),
                       conds=list(self.conds), groups=list(self.groups),
                       having=list(self.having), order=list(self.order), joins=list(self.joins),
                       understood=list(self.understood), missing=list(self.missing),
                       unknown=list(self.unknown))

    @property
    def is_empty(self) -> bool:
        return not (self.measures or self.columns or self.groups or self.subject)

    def tables(self) -> list[str]:
        """Every table the intent touches, the subject first."""
        out: list[str] = [self.subject] if self.subject else []
        cols = [*self.columns, *(c.col for c in self.conds), *(g.col for g in self.groups),
                *(g.key for g in self.groups if g.key), *(o.col for o in self.order if o.col),
                *(m.col for m in self.measures if m.col)]
        out += [c.table for c in cols if c is not None]
        out += [m.table for m in self.measures if m.table]
        out += [h.table for h in self.having]
        out += self.joins
        return list(dict.fromkeys(t for t in out if t))

    def describe(self) -> list[str]:
        """What was understood, as short phrases for people."""
        parts: list[str] = []
        if self.measures:
            parts.append(", ".join(m.describe() for m in self.measures if not m.hidden)
                         or self.measures[0].describe())
        if self.columns:
            parts.append("showing " + ", ".join(c.column for c in self.columns))
        if self.subject and not self.measures:
            parts.append(f"rows of {self.subject}")
        for c in self.conds:
            parts.append("where " + c.describe())
        for h in self.having:
            parts.append("with " + h.describe())
        if self.groups:
            parts.append("by " + ", ".join(g.describe() for g in self.groups))
        if self.order:
            o = self.order[0]
            what = (self.measures[o.measure].describe() if o.measure >= 0
                    else o.col.column if o.col else "")
            parts.append(f"{'highest' if o.desc else 'lowest'} {what} first")
        if self.limit:
            parts.append(f"top {self.limit}")
        return [p for p in parts if p]

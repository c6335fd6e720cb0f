"""The roles a question's mentions can take, and the navigation the parser passes share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .index import SchemaIndex, Target, ValueHit
from .intent import DateSpec
from .items import Item, build_items
from .match import find_slots
from .text import Token, tokenize

TIME_WORDS = frozenset({"first", "last", "earliest", "latest", "newest", "oldest"})
SOFT_LINKS = frozenset({"is", "are", "was", "were", "of", "whose", "with", "a", "an", "the",
                        "that", "which", "who", "have", "has", "had", "its", "their", "be",
                        "for", "at", "in", "on", "named", "called", "titled", "as", "to", "from",
                        "than", "by", "code", "does", "do", "did", "where"})


@dataclass(slots=True)
class Ref:
    pos: int
    targets: tuple[Target, ...]


@dataclass(slots=True)
class PCond:
    ref: Ref | None
    op: str
    values: tuple[Any, ...] = ()
    date: DateSpec | None = None
    like: str = ""
    props: tuple[str, ...] = ()
    hits: tuple[ValueHit, ...] = ()
    pos: int = 0
    joiner: str = "and"
    percent: bool = False


@dataclass(slots=True)
class PMeasure:
    func: str
    ref: Ref | None = None
    pos: int = 0


@dataclass(slots=True)
class PRank:
    """A superlative: rank by a column, a measure, the count of a table or a property."""

    desc: bool
    kind: str  # col, count, metric, props, mode, measure
    ref: Ref | None = None
    props: tuple[str, ...] = ()
    pos: int = 0
    limit: int | None = 1


@dataclass(slots=True)
class Parsed:
    tokens: list[Token]
    items: list[Item]
    conds: list[PCond] = field(default_factory=list)
    measures: list[PMeasure] = field(default_factory=list)
    ranks: list[PRank] = field(default_factory=list)
    groups: list[tuple[Ref | None, str, int]] = field(default_factory=list)  # ref, bucket, pos
    orders: list[tuple[Ref | None, bool, int]] = field(default_factory=list)  # ref, desc, pos
    having: list[tuple[Ref, str, float]] = field(default_factory=list)
    projections: list[Ref] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)  # tables named only to qualify a column
    context: set[int] = field(default_factory=set)  # table items that qualify a value
    limit: int | None = None
    distinct: bool = False
    sort_desc: bool = False
    star: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def orders_by_count(self) -> bool:
        return any(pos == -1 for _r, _d, pos in self.orders)


class ParserBase:
    """The question as items, and helpers to look left and right of one."""

    def __init__(self, question: str, index: SchemaIndex) -> None:
        self.index = index
        tokens = tokenize(question)
        self.p = Parsed(tokens, build_items(tokens, find_slots(tokens, index)))
        self.items = self.p.items

    def right(self, j: int, soft: frozenset[str] = frozenset()) -> int:
        k = j + 1
        while k < len(self.items) and (self.items[k].skippable or self._soft(k, soft)):
            k += 1
        return k

    def left(self, j: int, soft: frozenset[str] = frozenset()) -> int:
        k = j - 1
        while k >= 0 and (self.items[k].skippable or self._soft(k, soft)):
            k -= 1
        return k

    def _soft(self, k: int, soft: frozenset[str]) -> bool:
        it = self.items[k]
        return bool(soft) and it.token is not None and it.token.norm in soft

    def item(self, k: int) -> Item | None:
        return self.items[k] if 0 <= k < len(self.items) else None

    def schema(self, k: int, kinds: tuple[str, ...] = ("column",), *, free: bool = True
               ) -> Ref | None:
        it = self.item(k)
        if it is None or (free and it.used):
            return None
        m = it.get("schema")
        if m is None:
            return None
        top = max(m.targets, key=lambda t: (t.weight, t.kind == "table"))
        if top.kind == "table" and "table" not in kinds:
            return None  # a table named here, not one of its columns
        targets = tuple(t for t in m.targets if t.kind in kinds)
        return Ref(k, targets) if targets else None

    def number(self, k: int) -> float | None:
        it = self.item(k)
        if it is None or it.used:
            return None
        if it.number is not None:
            return it.number
        if it.date is not None and it.date.year is not None and it.end - it.start == 1:
            return float(it.date.year)
        return None

    def use(self, *ks: int, role: str = "x") -> None:
        for k in ks:
            if 0 <= k < len(self.items):
                self.items[k].used = role

    def negated(self, j: int) -> bool:
        for k in range(j - 1, max(-1, j - 4), -1):
            it = self.items[k]
            if it.has_kw("neg"):
                it.used = it.used or "neg"
                return True
            if it.slot is not None and not it.has_kw("cmp", "and"):
                return False
        return False

    def _joiner(self, prev: int, j: int) -> str:
        if prev < 0:
            return "and"
        words = [w for k in range(prev + 1, j) for w in self.items[k].kws]
        return "or" if "or" in words or ("comma" in words and "and" not in words) else "and"

    def _numeric(self, t: Target) -> bool:
        col = self.index.column(t.table, t.column) if t.kind == "column" else None
        return col is not None and col.family == "number"

    def _dated(self, t: Target) -> bool:
        col = self.index.column(t.table, t.column) if t.kind == "column" else None
        return col is not None and (col.family == "temporal" or col.yearlike)

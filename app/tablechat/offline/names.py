"""The index's data model: tables, columns, the names people use for them, values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from ..semantic import Metric
from .joins import KEY_SUFFIXES, JoinEdge
from .text import ABBREVIATIONS, split_identifier, stem, tokenize

MAX_VALUES_PER_COLUMN = 20000
MAX_VALUE_CHARS = 80
LABEL_NAMES = ("name", "title", "full name", "fullname", "label")
TABLE_SUFFIXES = frozenset({"data", "list", "info", "information", "detail", "record", "table",
                            "master", "dim", "fact", "tbl", "entry"})


@dataclass(slots=True)
class ColInfo:
    table: str
    name: str
    family: str  # text, number, temporal, boolean, other
    words: tuple[str, ...]
    primary: bool = False
    fk: bool = False
    unique: bool = False
    distinct: int | None = None
    low: Any = None
    high: Any = None

    @property
    def yearlike(self) -> bool:
        if self.family != "number":
            return False
        if "year" in self.words:
            return True
        return (isinstance(self.low, int | float) and isinstance(self.high, int | float)
                and 1800 <= self.low <= self.high <= 2100 and self.words[-1:] != ("id",))

    @property
    def keylike(self) -> bool:
        return self.primary or self.fk or (bool(self.words) and self.words[-1] in KEY_SUFFIXES)


@dataclass(slots=True)
class TableEntry:
    name: str
    words: tuple[str, ...]
    columns: dict[str, ColInfo]  # lower-case name → column
    row_count: int = 0
    key: str | None = None
    label: str | None = None
    session_only: bool = False

    def col(self, name: str) -> ColInfo | None:
        return self.columns.get(name.lower())

    def of_family(self, family: str) -> list[ColInfo]:
        return [c for c in self.columns.values() if c.family == family]


@dataclass(frozen=True, slots=True)
class Target:
    kind: str  # "table", "column" or "metric"
    table: str
    column: str = ""
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class ValueHit:
    table: str
    column: str
    value: Any


@dataclass(slots=True)
class MetricInfo:
    metric: Metric
    expression: exp.Expr
    tables: tuple[str, ...]
    base: str
    filter: exp.Expr | None = None  # which rows the metric counts (the semantic layer's rule)


@dataclass(slots=True)
class SchemaIndex:
    dialect: str
    tables: dict[str, TableEntry] = field(default_factory=dict)
    phrases: dict[tuple[str, ...], list[Target]] = field(default_factory=dict)
    vocabulary: set[str] = field(default_factory=set)
    vocab_list: list[str] = field(default_factory=list)
    vocabulary_words: set[str] = field(default_factory=set)
    values: dict[tuple[str, ...], list[ValueHit]] = field(default_factory=dict)
    value_words: dict[tuple[str, int], list[tuple[str, ...]]] = field(default_factory=dict)
    edges: list[JoinEdge] = field(default_factory=list)
    metrics: dict[str, MetricInfo] = field(default_factory=dict)
    max_phrase: int = 1
    max_value: int = 1

    def table(self, name: str) -> TableEntry | None:
        entry = self.tables.get(name)
        if entry is None:
            entry = next((t for n, t in self.tables.items() if n.lower() == name.lower()), None)
        return entry

    def column(self, table: str, column: str) -> ColInfo | None:
        entry = self.table(table)
        return entry.col(column) if entry else None

    def neighbours(self, table: str) -> list[tuple[str, JoinEdge]]:
        out = []
        for e in self.edges:
            if e.left == table:
                out.append((e.right, e))
            elif e.right == table:
                out.append((e.left, e))
        return out


# --- phrases ----------------------------------------------------------------------------------
def name_words(name: str) -> tuple[str, ...]:
    """Stemmed words of an identifier, with common abbreviations spelled out."""
    out: list[str] = []
    for w in split_identifier(name):
        full = ABBREVIATIONS.get(w, w)
        out.extend(stem(p) for p in full.split())
    return tuple(out)


def phrase_words(text: str) -> tuple[str, ...]:
    """Stemmed words of a synonym or value, as the question tokenizer produces them."""
    words: list[str] = []
    for tok in tokenize(text):
        if tok.kind == "word":
            words.append(tok.stem)
        elif tok.kind == "number":
            words.append(tok.norm)
    return tuple(words)


def _variants(words: tuple[str, ...]) -> set[tuple[str, ...]]:
    """The phrase as written, without inner 'of', and with 'X of Y' turned into 'Y X'."""
    out = {words}
    if "of" in words and 0 < words.index("of") < len(words) - 1:
        i = words.index("of")
        out.add(words[:i] + words[i + 1:])
        out.add(words[i + 1:] + words[:i])
    if len(words) > 1:
        out.add(("".join(words),))
    return {v for v in out if v}



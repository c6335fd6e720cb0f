"""Join paths between tables: declared foreign keys, the semantic layer's joins, and keys
inferred from names (``customer_id`` → ``customers.id``) or, failing that, from the data."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp

from ..semantic import SemanticLayer
from ..sql.schema import SchemaSnapshot, table_ref

if TYPE_CHECKING:
    from .index import ColInfo, SchemaIndex, TableEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JoinEdge:
    left: str  # the many side (holds the reference)
    left_col: str
    right: str  # the one side (the referenced key)
    right_col: str
    cost: float = 1.0

KEY_SUFFIXES = ("id", "code", "number", "key", "uid")
GENERIC_WORDS = frozenset({"id", "name", "code", "number", "type", "date", "description",
                           "detail", "other", "value", "text", "info", "information", "of"})


class JoinInference:
    """Mixed into the index builder: finds the edges of the join graph."""

    session: str | None
    semantic: SemanticLayer | None

    def _query(self, tree: exp.Expr, dialect: str, rows: int = 10000) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _joins(self, index: SchemaIndex, snapshot: SchemaSnapshot) -> None:
        seen: set[tuple[str, str, str, str]] = set()

        def add(left: str, lcol: str, right: str, rcol: str, cost: float) -> None:
            key = (left.lower(), lcol.lower(), right.lower(), rcol.lower())
            if key in seen or left == right:
                return
            seen.add(key)
            index.edges.append(JoinEdge(left, lcol, right, rcol, cost))
            col = index.column(left, lcol)
            if col is not None:
                col.fk = True

        for i, text in enumerate(self.semantic.joins if self.semantic else ()):
            parsed = _parse_join(text)
            if parsed and all(index.table(t) for t in (parsed[0], parsed[2])):
                a, ac, b, bc = parsed
                rb = index.column(b, bc)
                if rb is not None and not (rb.unique or rb.primary):
                    a, ac, b, bc = b, bc, a, ac
                add(a, ac, b, bc, 1.0 + 0.001 * (1 - 0.5 ** i))  # earlier joins preferred
        for info in snapshot.tables.values():
            for fk in info.foreign_keys:
                if index.table(fk.ref_table):
                    add(info.name, fk.column, index.table(fk.ref_table).name,  # type: ignore[union-attr]
                        fk.ref_column, 1.01)
        for entry in index.tables.values():
            for col in entry.columns.values():
                linked = False
                for other in index.tables.values():
                    if other is entry or other.key is None:
                        continue
                    key = other.col(other.key)
                    if key is None or key.family != col.family or (col.name == other.key and \
                            entry.key == col.name):
                        continue
                    cost = self._name_link(col, other, key)
                    if cost and (cost < 1.5 or self._subset(index, col, other, key)):
                        add(entry.name, col.name, other.name, key.name, cost)
                        linked = True
                own = col.unique and set(col.words[:-1]) <= set(entry.words)
                if not linked and col.words[-1:] == ("id",) and len(col.words) > 1 and not own:
                    self._id_link(index, entry, col, add)

    @staticmethod
    def _name_link(col: ColInfo, other: TableEntry, key: ColInfo) -> float:
        """How strongly ``col``'s name says it references ``other``'s key (0: not at all)."""
        words, table = col.words, other.words
        if not words or (col.primary and not col.fk and col.words == key.words):
            return 0.0
        if words == key.words and key.words != ("id",) and len(words) > 1 and \
                set(words[:-1]) <= set(table):
            return 1.1  # same key name in both tables (Stadium_ID)
        if words[-1] in KEY_SUFFIXES and len(words) > 1:
            base = words[:-1]
            if base == table or base == table[-len(base):] or "".join(base) == "".join(table):
                return 1.2
        if words == table or (len(table) > 1 and words == table[-1:]):
            return 1.6  # a column named after the table (flights.airline → airlines)
        if len(words) > 1 and words[-1:] == table[-1:] and words[-1] not in GENERIC_WORDS:
            return 1.8  # source_airport → airports
        return 0.0

    def _id_link(self, index: SchemaIndex, entry: TableEntry, col: ColInfo, add: Any) -> None:
        """friend.student_id → highschooler.id: an id column no table is named after, linked
        when its values are all ids of exactly one other table."""
        if any(e.left == entry.name and e.left_col == col.name for e in index.edges):
            return
        found = []
        for other in index.tables.values():
            key = other.col(other.key) if other.key else None
            if other is entry or key is None or key.words != ("id",) or \
                    key.family != col.family or other.row_count > 1_000_000:
                continue
            if self._subset(index, col, other, key):
                found.append((other, key))
        if len(found) == 1:
            add(entry.name, col.name, found[0][0].name, found[0][1].name, 2.0)

    def _subset(self, index: SchemaIndex, col: ColInfo, other: TableEntry, key: ColInfo) -> bool:
        """Every value of ``col`` is a value of ``other``'s key (checked on the data)."""
        inner = exp.select(exp.column(_ident(key.name))).from_(table_ref(other.name))
        ref = exp.column(_ident(col.name))
        tree = exp.select(exp.Count(this=exp.Star())).from_(
            table_ref(col.table)).where(
            exp.and_(ref.is_(exp.null()).not_(),
                     exp.Not(this=exp.In(this=ref.copy(), query=exp.Subquery(this=inner)))))
        rows = self._query(tree, index.dialect, 1)
        return bool(rows) and rows[0][0] == 0 and bool(col.distinct)


def _ident(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def _parse_join(text: str) -> tuple[str, str, str, str] | None:
    with contextlib.suppress(sqlglot.errors.ParseError):
        tree = sqlglot.parse_one(text, read="duckdb")
        if isinstance(tree, exp.EQ):
            a, b = tree.this, tree.expression
            if isinstance(a, exp.Column) and isinstance(b, exp.Column) and a.table and b.table:
                return a.table, a.name, b.table, b.name
    return None

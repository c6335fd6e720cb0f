"""What the offline engine knows about one database: names, values, keys, joins, statistics.

Built once per database (and per session with uploads) from the schema snapshot, the semantic
layer and the data itself, then cached by the engine.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from sqlglot import exp

from ..errors import TableChatError
from ..semantic import SemanticLayer
from ..sql.database import Database
from ..sql.schema import SchemaSnapshot, TableInfo, table_ref
from .joins import KEY_SUFFIXES, JoinInference
from .names import (
    LABEL_NAMES,
    MAX_VALUE_CHARS,
    MAX_VALUES_PER_COLUMN,
    ColInfo,
    JoinEdge,
    SchemaIndex,
    TableEntry,
    Target,
    ValueHit,
    name_words,
    phrase_words,
)
from .phrases import PhraseBuilder

log = logging.getLogger(__name__)
__all__ = ["ColInfo", "IndexBuilder", "JoinEdge", "SchemaIndex", "TableEntry", "Target",
           "ValueHit", "name_words", "phrase_words"]


class IndexBuilder(JoinInference, PhraseBuilder):
    def __init__(self, db: Database, semantic: SemanticLayer | None, session: str | None):
        self.db = db
        self.semantic = semantic
        self.session = session

    def build(self, snapshot: SchemaSnapshot, base: SchemaIndex | None = None) -> SchemaIndex:
        """Index ``snapshot``; with ``base``, reuse what it knows and index only new tables."""
        index = SchemaIndex(snapshot.dialect)
        new: list[TableEntry] = []
        for info in snapshot.tables.values():
            known = base.tables.get(info.name) if base is not None else None
            if known is not None and not info.session_only:
                index.tables[info.name] = known
            else:
                index.tables[info.name] = self._table(info)
                new.append(index.tables[info.name])
        self._statistics(index, snapshot, new)
        for entry in new:
            entry.key = self._key(entry)
            entry.label = self._label(entry)
        self._joins(index, snapshot)
        self._phrases(index)
        self._metrics(index)
        if base is not None:
            index.values = {k: list(v) for k, v in base.values.items()}
            index.value_words = {k: list(v) for k, v in base.value_words.items()}
            index.max_value = base.max_value
        self._values(index, new)
        return index

    def _table(self, info: TableInfo) -> TableEntry:
        cols: dict[str, ColInfo] = {}
        for c in info.columns:
            cols[c.name.lower()] = ColInfo(info.name, c.name, c.family, name_words(c.name),
                                           primary=c.primary_key)
        for fk in info.foreign_keys:
            col = cols.get(fk.column.lower())
            if col is not None:
                col.fk = True
        return TableEntry(info.name, name_words(info.name), cols, info.row_count or 0,
                          session_only=info.session_only)

    def _query(self, tree: exp.Expr, dialect: str, rows: int = 10000) -> list[tuple]:
        try:
            return self.db.execute(tree.sql(dialect=dialect), max_rows=rows,
                                   session=self.session).rows
        except TableChatError as exc:
            log.debug("offline index query failed: %s", exc)
            return []

    def _statistics(self, index: SchemaIndex, snapshot: SchemaSnapshot,
                    tables: list[TableEntry]) -> None:
        for entry in tables:
            selects: list[exp.Expr] = [exp.Count(this=exp.Star())]
            cols = list(entry.columns.values())
            for c in cols:
                ref = exp.column(_ident(c.name))
                selects.append(exp.Count(this=exp.Distinct(expressions=[ref])))
                if c.family in ("number", "temporal"):
                    selects += [exp.Min(this=ref.copy()), exp.Max(this=ref.copy())]
            tree = exp.select(*selects).from_(table_ref(entry.name))
            rows = self._query(tree, snapshot.dialect, 1)
            if not rows:
                continue
            row, i = rows[0], 1
            entry.row_count = int(row[0] or 0)
            for c in cols:
                c.distinct = int(row[i] or 0)
                c.unique = entry.row_count > 0 and c.distinct == entry.row_count
                i += 1
                if c.family in ("number", "temporal"):
                    c.low, c.high = row[i], row[i + 1]
                    i += 2

    @staticmethod
    def _key(entry: TableEntry) -> str | None:
        primary = [c for c in entry.columns.values() if c.primary]
        if len(primary) == 1:
            return primary[0].name
        if primary:
            return None
        candidates = [c for c in entry.columns.values() if c.unique and c.words
                      and c.words[-1] in KEY_SUFFIXES]
        for c in candidates:
            if c.words in (("id",), (*entry.words, "id"), ("uid",)):
                return c.name
        own = [c for c in candidates if c.words[:-1] and set(c.words[:-1]) <= set(entry.words)]
        if own:
            return own[0].name
        first = next(iter(entry.columns.values()), None)
        if first is not None and first in candidates:
            return first.name
        return candidates[0].name if len(candidates) == 1 else None

    @staticmethod
    def _label(entry: TableEntry) -> str | None:
        texts = [c for c in entry.columns.values() if c.family == "text"]
        singular = entry.words[-1:] if entry.words else ()
        for c in texts:
            if c.words == entry.words or (singular and c.words == singular):
                return c.name
        for wanted in LABEL_NAMES:
            target = phrase_words(wanted)
            for c in texts:
                if c.words == target or c.words == (*entry.words, *target):
                    return c.name
        for c in texts:
            if c.words[-1:] in (("name",), ("title",)) and "last" not in c.words:
                return c.name
        return None

    def _distinct(self, entry: TableEntry, col: ColInfo, dialect: str) -> list[Any]:
        """Distinct values of a column, most frequent first (the database's own helper when it
        has one)."""
        getter = getattr(self.db, "distinct_values", None)
        if callable(getter):
            return list(getter(entry.name, col.name, limit=MAX_VALUES_PER_COLUMN,
                               session=self.session))
        ref = exp.column(_ident(col.name))
        tree = (exp.select(ref).from_(table_ref(entry.name))
                .where(ref.is_(exp.null()).not_()).group_by(ref.copy())
                .order_by(exp.Ordered(this=exp.Count(this=exp.Star()), desc=True))
                .limit(MAX_VALUES_PER_COLUMN))
        return [r[0] for r in self._query(tree, dialect, MAX_VALUES_PER_COLUMN)]

    def _values(self, index: SchemaIndex, tables: list[TableEntry]) -> None:
        buckets: dict[tuple[str, int], set[tuple[str, ...]]] = defaultdict(set)
        for k, v in index.value_words.items():
            buckets[k].update(v)
        for entry in tables:
            for col in entry.columns.values():
                if col.family != "text":
                    continue
                try:
                    values = self._distinct(entry, col, index.dialect)
                except (TableChatError, TypeError) as exc:
                    log.debug("distinct values of %s.%s: %s", entry.name, col.name, exc)
                    continue
                for raw in values:
                    if not isinstance(raw, str) or not raw.strip() or len(raw) > MAX_VALUE_CHARS:
                        continue
                    words = phrase_words(raw)
                    if not words or len(words) > 8:
                        continue
                    hits = index.values.setdefault(words, [])
                    if len(hits) < 12:
                        hits.append(ValueHit(entry.name, col.name, raw))
                    index.max_value = max(index.max_value, len(words))
                    joined = "".join(words)
                    if len(joined) >= 4:
                        buckets[(joined[0], len(words))].add(words)
        index.value_words = {k: sorted(v) for k, v in buckets.items()}
        index.vocab_list = sorted(w for words in index.phrases for w in words
                                  if len(words) > 1 or w in index.vocabulary_words)
def _ident(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)

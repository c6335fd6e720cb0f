"""The names a question may use for each table, column and metric (with synonyms and
partial names), and the metrics of the semantic layer as sqlglot expressions."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlglot
from sqlglot import exp

from ..semantic import SemanticLayer
from .joins import GENERIC_WORDS, KEY_SUFFIXES
from .names import (
    TABLE_SUFFIXES,
    ColInfo,
    MetricInfo,
    SchemaIndex,
    TableEntry,
    Target,
    _variants,
    phrase_words,
)
from .text import STOPWORDS


class PhraseBuilder:
    """Mixed into the index builder: the phrase table and the metrics."""

    semantic: SemanticLayer | None

    def _phrases(self, index: SchemaIndex) -> None:
        phrases: dict[tuple[str, ...], dict[tuple[str, str, str], float]] = defaultdict(dict)

        def add(words: tuple[str, ...], target: Target) -> None:
            words = tuple(w for w in words if w)
            if not words or (len(words) == 1 and words[0] in STOPWORDS):
                return
            key = (target.kind, target.table, target.column)
            for v in _variants(words):
                if target.weight > phrases[v].get(key, 0.0):
                    phrases[v][key] = target.weight

        sem = self.semantic
        for entry in index.tables.values():
            add(entry.words, Target("table", entry.name, "", 1.0))
            if len(entry.words) > 1 and entry.words[-1] not in GENERIC_WORDS | TABLE_SUFFIXES:
                add(entry.words[-1:], Target("table", entry.name, "", 0.7))
            if len(entry.words) > 1 and entry.words[-1] in TABLE_SUFFIXES:
                add(entry.words[:-1], Target("table", entry.name, "", 0.85))
            if len(entry.words) > 2:
                add(entry.words[-2:], Target("table", entry.name, "", 0.8))
            for syn in (sem.table_synonyms.get(entry.name, ()) if sem else ()):
                add(phrase_words(syn), Target("table", entry.name, "", 0.95))
            for col in entry.columns.values():
                self._column_phrases(entry, col, add)
                for syn in (sem.column_synonyms.get((entry.name, col.name), ()) if sem else ()):
                    add(phrase_words(syn), Target("column", entry.name, col.name, 0.95))
        for m in (sem.metrics.values() if sem else ()):
            add(phrase_words(m.name.replace("_", " ")), Target("metric", m.name, "", 1.0))
            for syn in m.synonyms:
                add(phrase_words(syn), Target("metric", m.name, "", 0.95))
        for words, targets in phrases.items():
            index.phrases[words] = [Target(k, t, c, w) for (k, t, c), w in targets.items()]
            index.vocabulary.update(words)
            index.max_phrase = max(index.max_phrase, len(words))
        index.vocabulary_words = {w for t in index.tables.values() for w in t.words} | {
            w for t in index.tables.values() for c in t.columns.values() for w in c.words}

    @staticmethod
    def _column_phrases(entry: TableEntry, col: ColInfo, add: Any) -> None:
        words = col.words
        add(words, Target("column", entry.name, col.name, 1.0))
        # the table's own prefix dropped: pets.pet_age → age, documents.document_name → name
        for n in range(len(entry.words), 0, -1):
            if len(words) > n and (words[:n] == entry.words[-n:] or (
                    n == 1 and len(words[0]) >= 3 and entry.words[-1].startswith(words[0]))):
                add(words[n:], Target("column", entry.name, col.name, 0.9))
                break
        if len(words) > 1 and words[-1] != "id":
            for i in range(1, len(words)):
                rest = words[i:]
                if rest[0] == "of" or (len(rest) == 1 and rest[0] in ("of",)):
                    continue
                add(rest, Target("column", entry.name, col.name, 0.6))
            lead = words[:-1]
            if lead[-1:] != ("of",) and words[-1] in GENERIC_WORDS | {"year", "count"} and \
                    words[-1] not in KEY_SUFFIXES:
                add(lead, Target("column", entry.name, col.name, 0.55))

    def _metrics(self, index: SchemaIndex) -> None:
        if self.semantic is None:
            return
        for m in self.semantic.metrics.values():
            try:
                tree = sqlglot.parse_one(m.expression, read="duckdb")
                cond = sqlglot.parse_one(m.filter, read="duckdb") if m.filter else None
            except sqlglot.errors.ParseError:
                continue
            cols = [*tree.find_all(exp.Column), *(cond.find_all(exp.Column) if cond else ())]
            tables = tuple(dict.fromkeys(c.table for c in cols if c.table))
            known = [index.table(t) for t in tables]
            if not tables or any(k is None for k in known):
                continue
            base = index.table(m.table) if m.table else known[0]
            if base is None:
                continue
            names = tuple(k.name for k in known if k)
            index.metrics[m.name] = MetricInfo(m, tree, names, base.name, cond)

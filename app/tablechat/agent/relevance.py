"""Which tables a question is about: lexical relevance over names, descriptions, synonyms,
sample values and metric definitions, plus the foreign-key neighbours of the tables chosen.

Deterministic and dependency-free (no embeddings): a question's words, lower-cased, split on
``snake_case``/``camelCase`` and lightly stemmed, are matched against each table's words, each
match weighted by where it was found and by how rare the word is across tables (IDF).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

from ..semantic import SemanticLayer
from ..sql.schema import SchemaSnapshot, TableInfo

_WORD = re.compile(r"[A-Za-z][a-z]+|[A-Z]+(?![a-z])|[a-z]+|\d+")
_STOP_TEXT = """\
    a an the of in on at to for by with from and or not no is are was were be been being
    what which who whom whose how many much more most less least per each every all any some
    show list give me tell find get return display count number total sum average avg mean
    top bottom highest lowest largest smallest best worst first last than then that this these
    those there their its it do does did have has had i we you they our your my can could
    would should please between over under into out up down about as if so only also just
    year years month months day days week weeks quarter time date dates
    table tables column columns row rows record records value values data database"""
STOPWORDS = frozenset(_STOP_TEXT.split())

# where a word was found → weight
W_TABLE_NAME = 4.0
W_TABLE_SYNONYM = 4.0
W_METRIC = 3.0
W_COLUMN_NAME = 1.5
W_COLUMN_SYNONYM = 1.5
W_SAMPLE = 1.0
W_DESCRIPTION = 0.5


def stem(word: str) -> str:
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("ses", "xes", "zes", "ches", "shes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def words(text: str) -> set[str]:
    """Content words of ``text``: split identifiers, lower-case, stem, drop stop words."""
    out = set()
    for raw in _WORD.findall(text or ""):
        w = stem(raw)
        if len(w) > 1 and w not in STOPWORDS and not w.isdigit():
            out.add(w)
    return out


def table_terms(table: TableInfo, semantic: SemanticLayer | None) -> dict[str, float]:
    """word → the highest weight it has anywhere in the table's description."""
    terms: dict[str, float] = {}

    def add(text: str, weight: float) -> None:
        for w in words(text):
            if weight > terms.get(w, 0.0):
                terms[w] = weight

    add(table.name, W_TABLE_NAME)
    add(table.description, W_DESCRIPTION)
    for col in table.columns:
        add(col.name, W_COLUMN_NAME)
        add(col.description, W_DESCRIPTION)
        for sample in col.samples:
            add(str(sample), W_SAMPLE)
    if semantic is not None:
        add(semantic.table_descriptions.get(table.name, ""), W_DESCRIPTION)
        for syn in semantic.table_synonyms.get(table.name, ()):
            add(syn, W_TABLE_SYNONYM)
        for (tname, cname), syns in semantic.column_synonyms.items():
            if tname == table.name:
                for syn in syns:
                    add(syn, W_COLUMN_SYNONYM)
                add(semantic.column_descriptions.get((tname, cname), ""), W_DESCRIPTION)
        for metric in semantic.metrics.values():
            if re.search(rf"\b{re.escape(table.name)}\b", metric.expression + " " + metric.table):
                add(" ".join((metric.name, *metric.synonyms)), W_METRIC)
    return terms


class RelevanceIndex:
    """The words of every table of one snapshot, ready to score questions against."""

    def __init__(self, snapshot: SchemaSnapshot, semantic: SemanticLayer | None = None) -> None:
        self.snapshot = snapshot
        self.semantic = semantic
        self.terms = {name: table_terms(t, semantic) for name, t in snapshot.tables.items()}
        # word → (table, weight) for every table it appears in: a question looks up its own
        # few words instead of intersecting them with every table's
        self.postings: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for name, terms in self.terms.items():
            for word, weight in terms.items():
                self.postings[word].append((name, weight))
        self.referencing: dict[str, list[str]] = defaultdict(list)
        for name, table in snapshot.tables.items():
            for fk in table.foreign_keys:
                ref = snapshot.table(fk.ref_table)
                if ref is not None:
                    self.referencing[ref.name].append(name)

    def scores(self, question: str) -> dict[str, float]:
        """table → relevance to ``question`` (0 when no word matches)."""
        n = max(1, len(self.terms))
        score = dict.fromkeys(self.terms, 0.0)
        for word in words(question):
            found = self.postings.get(word)
            if found:
                idf = math.log(1 + n / len(found))
                for name, weight in found:
                    score[name] += weight * idf
        return score

    def rank(self, question: str) -> tuple[list[str], list[str]]:
        """(relevant tables, each followed by the tables its foreign keys reference, then the
        tables referencing a relevant one; the other tables), most relevant first."""
        snapshot = self.snapshot
        score = self.scores(question)
        relevant = sorted((n for n, s in score.items() if s > 0), key=lambda n: (-score[n], n))
        ordered: list[str] = []
        seen: set[str] = set()

        def put(name: str) -> None:
            if name not in seen:
                seen.add(name)
                ordered.append(name)

        for name in relevant:
            put(name)
            for fk in snapshot.tables[name].foreign_keys:
                ref = snapshot.table(fk.ref_table)
                if ref is not None:
                    put(ref.name)
        for name in relevant:
            for other in sorted(self.referencing[name], key=lambda n: (-score[n], n)):
                put(other)
        rest = [n for n in snapshot.tables if n not in seen]
        return ordered, rest


_CACHE: list[RelevanceIndex] = []
_CACHE_SIZE = 4


def index_for(snapshot: SchemaSnapshot, semantic: SemanticLayer | None = None) -> RelevanceIndex:
    """The (cached) index of ``snapshot``: built once per snapshot object and semantic layer."""
    for index in _CACHE:
        if index.snapshot is snapshot and index.semantic is semantic \
                and len(index.terms) == len(snapshot.tables):
            return index
    index = RelevanceIndex(snapshot, semantic)
    _CACHE.insert(0, index)
    del _CACHE[_CACHE_SIZE:]
    return index


def scores(
    snapshot: SchemaSnapshot, question: str, semantic: SemanticLayer | None = None
) -> dict[str, float]:
    """table → relevance to ``question`` (0 when no word matches)."""
    return index_for(snapshot, semantic).scores(question)


def rank_tables(
    snapshot: SchemaSnapshot, question: str, semantic: SemanticLayer | None = None
) -> tuple[list[str], list[str]]:
    """(relevant tables with their foreign-key neighbours; the other tables)."""
    return index_for(snapshot, semantic).rank(question)


__all__ = ["RelevanceIndex", "index_for", "rank_tables", "scores", "stem", "words"]

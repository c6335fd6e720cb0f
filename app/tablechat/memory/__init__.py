"""Verified examples as memory: retrieve the question→SQL pairs people verified that are
closest to a new question (BM25), and reuse one's SQL when the question says the same thing
with other values (``values.adapt``).

``Memory(examples)`` works on a fixed list; ``StoreMemory(store, database)`` reads one
database's examples from the store and rebuilds its index when they change.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..store import Example, Store

if TYPE_CHECKING:
    from ..config import Settings
from .bm25 import BM25, terms, words
from .values import adapt

CANDIDATES = 5
REVISION_TTL = 1.0  # seconds an example added by another process may take to be used
_COUNT_RE = re.compile(r"\bhow many\b|\bnumber of\b|\bcount\b|\bcounts\b", re.IGNORECASE)
# Words that turn one question into another, by what they mean: two questions that differ
# in one of these classes (an extreme, a comparison, a negation, a direction, ...) ask
# different things even when every other word is shared. Synonyms share a class, so
# "largest" and "highest" do not keep a paraphrase apart.
_CLASSES = {
    "max": "most highest largest biggest greatest maximum max top oldest heaviest longest "
           "latest newest",
    "min": "least fewest lowest smallest minimum min youngest lightest shortest earliest",
    "gt": "more greater larger bigger above over exceed exceeding higher older heavier "
          "longer after",
    "lt": "less fewer smaller below under lower younger lighter shorter before",
    "not": "not no without never except none neither nor",
    "both": "both",
    "or": "or either",
    "asc": "ascending increasing",
    "desc": "descending decreasing",
    "avg": "average mean avg",
    "sum": "sum",
    "dest": "arriving arrive arrival destination into",
    "src": "departing depart departure source leaving leave",
}
CONTRAST = {w: cls for cls, text in _CLASSES.items() for w in words(text)}
DEFAULT_MIN_SCORE = 0.5


def normalize_question(text: str) -> str:
    """A question's words only, lower case: equal for exact duplicates."""
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


@dataclass(slots=True)
class Match:
    """A verified example that answers a new question."""

    example: Example
    sql: str  # the example's SQL with the question's values
    score: float  # 0-1: weighted share of words the two questions have in common
    values: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for the person: which example answered, with which values."""
        text = f"a verified example: “{self.example.question}”"
        if self.values:
            text += " with " + ", ".join(f"{a} → {b}" for a, b in self.values.items())
        return text


class Memory:
    """A fixed set of verified examples, searchable by question."""

    def __init__(self, examples: Sequence[Example], *, min_score: float = DEFAULT_MIN_SCORE,
                 exclude_same_question: bool = False) -> None:
        self.examples = list(examples)
        self.min_score = min_score
        # leave-one-out evaluation: an example asking the very question is not memory
        self.exclude_same_question = exclude_same_question
        self._terms = [terms(e.question) for e in self.examples]
        self._index = BM25(self._terms)

    def __len__(self) -> int:
        return len(self.examples)

    def search(self, question: str, k: int = CANDIDATES) -> list[Example]:
        """The ``k`` examples whose questions are closest to ``question`` (BM25), best first."""
        return [self.examples[i] for i, _ in self._search(question, k)]

    def _search(self, question: str, k: int) -> list[tuple[int, float]]:
        query = terms(question)
        if not self.exclude_same_question:
            return self._index.search(query, k)
        own = normalize_question(question)
        hits = self._index.search(query, k + 8)  # room for the question's own duplicates
        return [(i, s) for i, s in hits
                if normalize_question(self.examples[i].question) != own][:k]

    def _similarity(self, a: list[str], b: list[str]) -> float:
        """IDF-weighted Dice overlap of two questions' terms (a term unknown to the index
        weighs as much as the rarest)."""
        top = max(self._index.idf.values(), default=1.0)
        weight = self._index.idf.get
        sa, sb = set(a), set(b)
        common = sum(weight(t, top) for t in sa & sb)
        total = sum(weight(t, top) for t in sa) + sum(weight(t, top) for t in sb)
        return 2 * common / total if total else 0.0

    def match(self, question: str, dialect: str, vocabulary: frozenset[str] = frozenset()
              ) -> Match | None:
        """The best example that answers ``question`` (its SQL adapted to the question's
        values), when one is close enough (``min_score``), else None.

        ``vocabulary``: the schema's words (table and column names, split and stemmed). The
        two questions must name the same ones: "names of students" is not "ids of students".
        """
        query = terms(question)
        named = set(query) & vocabulary
        best: Match | None = None
        for i, _ in self._search(question, CANDIDATES):
            example = self.examples[i]
            adapted = adapt(example.question, example.sql, question, dialect)
            if adapted is None:
                continue
            if _contrasts(example.question, question, adapted.values):
                continue
            changed = set(terms(" ".join([*adapted.values, *adapted.values.values()])))
            if (set(self._terms[i]) & vocabulary) - changed != named - changed:
                continue
            # the values changed are set aside: they differ by design
            score = self._similarity([t for t in self._terms[i] if t not in changed],
                                     [t for t in query if t not in changed])
            if score >= self.min_score and (best is None or score > best.score):
                best = Match(example, adapted.sql, round(score, 3), adapted.values)
        return best


def _counts(text: str) -> bool:
    """Does the question ask for a count ("how many", "number of", "count")?"""
    return bool(_COUNT_RE.search(text))


def _contrasts(a: str, b: str, values: dict[str, str]) -> bool:
    """True when a word that changes a question's meaning is in only one of the two, or
    one asks for a count and the other does not."""
    changed = set(words(" ".join([*values, *values.values()])))
    if _counts(a) != _counts(b):
        return True

    def classes(text: str) -> set[str]:
        return {CONTRAST[w] for w in set(words(text)) - changed if w in CONTRAST}

    return classes(a) != classes(b)


class StoreMemory:
    """One database's verified examples in the store, re-read when they change."""

    def __init__(self, store: Store | Callable[[], Store | None], database: str, *,
                 min_score: float = DEFAULT_MIN_SCORE) -> None:
        self._store = store  # or how to open it: on first use, not when tablechat connects
        self.database = database
        self.min_score = min_score
        self._revision: tuple[int, int] | None = None
        self._checked = 0.0
        self._writes: int | None = None
        self._memory = Memory([], min_score=min_score)
        self._lock = threading.Lock()

    @property
    def store(self) -> Store | None:
        """The store (opened now if it was given as an opener; None while it does not
        exist)."""
        if isinstance(self._store, Store):
            return self._store
        opened = self._store()
        if opened is not None:
            self._store = opened
        return opened

    def current(self) -> Memory:
        """The memory as the store holds it. Changes made through this process's store are
        seen at once; other processes' within REVISION_TTL (the revision query costs more
        than a search, bench/bench_memory.py)."""
        now = time.monotonic()
        store = self.store
        if store is None:  # no store yet (a stat of its file per question)
            return self._memory
        writes = getattr(store, "example_writes", None)  # this process's own changes
        if (self._revision is not None and now - self._checked < REVISION_TTL
                and writes == self._writes):
            return self._memory
        self._writes = writes
        revision = store.examples_revision(self.database)
        self._checked = now
        with self._lock:
            if revision != self._revision:
                self._memory = Memory(store.examples(database=self.database),
                                      min_score=self.min_score)
                self._revision = revision
            return self._memory

    def match(self, question: str, dialect: str, vocabulary: frozenset[str] = frozenset()
              ) -> Match | None:
        """As :meth:`Memory.match`, on the examples the store holds now."""
        return self.current().match(question, dialect, vocabulary)

    def search(self, question: str, k: int = CANDIDATES) -> list[Example]:
        """As :meth:`Memory.search`, on the examples the store holds now."""
        return self.current().search(question, k)


def store_memory(settings: Settings, database: str) -> StoreMemory:
    """``database``'s verified examples in the store ``settings`` name, opened on first use."""
    from ..store import open_store, store_url

    url = store_url(settings)

    def opener() -> Store | None:
        path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
        if path is not None and not Path(path).exists():
            return None  # no store yet, so no examples: asking a question never creates one
        return open_store(url)

    return StoreMemory(opener, database, min_score=settings.memory_min_score)


MemoryLike = Memory | StoreMemory
Loader = Callable[[], Sequence[Example]]

__all__ = ["Match", "Memory", "MemoryLike", "StoreMemory", "normalize_question", "store_memory"]

"""Okapi BM25 over short texts, small and dependency-free.

Questions are short (5-25 words), so the index is an inverted list per term and a query
touches only the postings of its own terms: with 10,000 examples a lookup costs well under a
millisecond (``bench/bench_memory.py``).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

_WORD_RE = re.compile(r"[a-z0-9]+")
# words that carry no intent of their own in a question about data
STOPWORDS = frozenset(str.split(
    "a an the of in on at to for from by with and or is are was were be been do does did "
    "what which who whom whose how there that this these those it its their our we you i me "
    "please show give list tell find return display get all each every"
))


def stem(word: str) -> str:
    """A light English singular: enough to make 'singers' meet 'singer'."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """Every word stem of ``text``, lower case."""
    return [stem(w) for w in _WORD_RE.findall(text.lower())]


def terms(text: str) -> list[str]:
    """The index terms of ``text``: lower-case word stems, stop words left out."""
    return [stem(w) for w in _WORD_RE.findall(text.lower()) if w not in STOPWORDS]


class BM25:
    """An index of documents (term lists) answering top-k queries by BM25 score.

    Each term's postings are two numpy arrays (document ids, precomputed BM25 weights), so a
    query costs one vectorised add per query term, whatever the number of documents holding it.
    """

    def __init__(self, docs: Sequence[Sequence[str]], *, k1: float = 1.2, b: float = 0.75
                 ) -> None:
        self.size = len(docs)
        lengths = [len(d) for d in docs]
        avg = (sum(lengths) / self.size) if self.size else 1.0
        postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for i, doc in enumerate(docs):
            for term, tf in Counter(doc).items():
                postings[term].append((i, tf))
        self.idf = {t: math.log(1 + (self.size - len(p) + 0.5) / (len(p) + 0.5))
                    for t, p in postings.items()}
        self._postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for term, items in postings.items():
            ids = np.fromiter((i for i, _ in items), dtype=np.int64, count=len(items))
            tfs = np.fromiter((tf for _, tf in items), dtype=np.float64, count=len(items))
            norm = 1 - b + b * np.asarray([lengths[i] for i, _ in items]) / (avg or 1)
            self._postings[term] = (ids, self.idf[term] * tfs * (k1 + 1) / (tfs + k1 * norm))

    def search(self, query: Sequence[str], k: int = 5) -> list[tuple[int, float]]:
        """The ``k`` best documents for ``query`` as (index, score), best first."""
        found = [self._postings[t] for t in set(query) if t in self._postings]
        if not found or k <= 0:
            return []
        scores = np.zeros(self.size)
        for ids, weights in found:
            scores[ids] += weights  # ids are unique within one term's postings
        hit = np.flatnonzero(scores)
        if len(hit) > k:
            hit = hit[np.argpartition(-scores[hit], k - 1)[:k]]
        return sorted(((int(i), float(scores[i])) for i in hit), key=lambda kv: (-kv[1], kv[0]))

"""What shape of SQL a question asks for, read from its words (issue 13).

Under the schema's grammar SmolLM2-135M names only real columns, but it still chooses the
query's shape badly: on the 97 demo questions it answered "How many customers are there in
each segment?" with an ungrouped ``count(*)``, "What are our 3 cheapest products?" with
``WHERE category_id = 3``, and filtered on ``IS NULL`` where the question gave a value. The
words that decide the shape are few and plain English ("how many", "average", "per",
"top 5", "cheapest", "which ... the most"), so they are read here and the grammar
(:func:`.grammar.sql_grammar`) admits only queries of that shape; the model fills the names.

A :class:`Sketch` only ever narrows what the grammar admits, and only on a word that says so;
a question with none of these words gets the whole grammar. It is a reading of English, not
of any database: no schema, question set or example went into it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .relevance import stem, words

AGGREGATES = ("count", "sum", "avg", "min", "max")


def _words(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", re.I)


_COUNT = _words("how many", "number of", "count")
_AVG = _words("average", "mean", "avg")
_SUM = _words("total", "sum", "how much")
_MAX = _words("maximum", "max", "highest", "largest", "biggest", "most expensive")
_MIN = _words("minimum", "min", "lowest", "smallest", "cheapest")
_MORE = _words("most", "highest", "largest", "biggest", "best", "greatest", "maximum", "top",
               "more expensive", "most expensive")
_LESS = _words("least", "lowest", "smallest", "fewest", "cheapest", "minimum", "worst", "bottom")
_SUPERLATIVE = _words("most", "least", "highest", "lowest", "largest", "smallest", "biggest",
                      "fewest", "cheapest", "best", "worst", "greatest", "top", "bottom")
_WHICH = re.compile(r"^\s*(?:which|who)\b", re.I)
# "per region", "by channel", "in each segment", "monthly"; not "ordered by", "placed by Ahmed"
_GROUP = re.compile(r"\b(?:per|by)\s+(?!the\b|a\b|an\b)(?P<next>\w+)|\bbreak(?:s|ing)?\s+down\b"
                    r"|\b(?:daily|weekly|monthly|quarterly|yearly|annual)\b", re.I)
_EACH = _words("each", "every", "for all")
_WHICH_NOUN = re.compile(r"^\s*(?:which|what|who)(?:\s+are)?(?:\s+our|\s+the)?\s+(?:\d+\s+)?"
                         r"([a-z]\w*)", re.I)
_TOP_NOUN = re.compile(r"\btop\s+\d+\s+([a-z]\w*)", re.I)
_MOST_OF = re.compile(r"\b(?:most|fewest|least)\s+([a-z]\w*)", re.I)
_PER = re.compile(r"\b(?:per|by|each|every)\s+(?!the\b)((?:[a-z]\w*)(?:\s+[a-z]\w*)?)")
_PERIODIC = {"daily": "day", "weekly": "week", "monthly": "month", "quarterly": "quarter",
             "yearly": "year", "annual": "year"}
_SORTED_BY = re.compile(r"\b(?:order(?:ed)?|sort(?:ed)?|rank(?:ed)?)\s+by\b", re.I)
_DISTINCT = _words("different", "distinct", "unique")
# "a or b", not "20% or more"
_OR = re.compile(r"\b(?:either|or(?!\s+(?:more|less|fewer|above|below|later|earlier|over|"
                 r"under|higher|lower|greater|so)\b))\b", re.I)
_COUNTED = re.compile(r"\b(?:how many|number of)\s+(?:different\s+|distinct\s+|unique\s+)?"
                      r"(\w+)", re.I)
_YEAR = re.compile(r"^(?:1[89]\d\d|2\d\d\d)$")
# a count of rows to show: "top 5", "3 cheapest", "the 10 best-selling" (not "$30", "20%",
# "45.5", a year)
_TOP_N = re.compile(r"\b(?:top|bottom)\s+(\d{1,4})\b", re.I)
_NUMBER = re.compile(r"(?<![$\w.])(\d{1,4})(?![\w.%])")


@dataclass(frozen=True)
class Sketch:
    """The shape a question asks for. Empty fields admit anything."""

    aggregates: frozenset[str] = frozenset()  # the select list's aggregates must be these
    grouped: bool = False  # rows per group ("per", "by", "each", "monthly")
    top: int | None = None  # ORDER BY ... LIMIT top ("top 5", "which ... the most": 1)
    descending: bool | None = None  # "most" → DESC, "least"/"cheapest" → ASC
    distinct: bool = False  # "different", "distinct", "unique"
    either: bool = False  # "or": a WHERE may join comparisons with OR
    # the word after "how many" ("countries"), or "the most" in a ranking, stemmed
    counted: str | None = None
    # the words after "per"/"by"/"each" ("sales channel"), or of "which X"/"top n X" in a
    # ranking, stemmed
    per: tuple[str, ...] = ()


def names_table(word: str | None, table: str) -> bool:
    """Whether ``word`` (stemmed, as :attr:`Sketch.counted`) names ``table`` ("order" names
    orders, not order_items)."""
    return word is not None and words(table) == {word}


def _key_words(text: str) -> list[str]:
    """The stemmed content words of ``text`` in their order, periods kept ("month")."""
    content = words(text)
    stems = (stem(w) for w in re.findall(r"[a-z]+", text.lower()))
    return [w for w in dict.fromkeys(stems) if w in content or w in _PERIODIC.values()]


def top_count(question: str) -> tuple[int, str] | None:
    """(n, the digits as written) of "top n", or of a number followed, within four words, by
    a superlative ("3 cheapest", "5 most expensive", "3 customers placed the most"); None
    otherwise."""
    found = _TOP_N.search(question)
    if found:
        return int(found.group(1)), found.group(1)
    for match in _NUMBER.finditer(question):
        digits = match.group(1)
        if _YEAR.match(digits) or int(digits) == 0:
            continue
        after = question[match.end():].split()[:4]
        if any(_SUPERLATIVE.fullmatch(w.strip("?,.!").split("-")[0]) for w in after):
            return int(digits), digits
    return None


def sketch(question: str) -> Sketch:
    """The :class:`Sketch` of ``question``."""
    aggregates: set[str] = set()
    if _COUNT.search(question):
        aggregates.add("count")
    if _AVG.search(question):
        aggregates.add("avg")
    if _SUM.search(question):
        aggregates.add("sum")
    descending = True if _MORE.search(question) else False if _LESS.search(question) else None
    ranked = top_count(question)
    top = ranked[0] if ranked else None
    if top is None and _WHICH.search(question) and _SUPERLATIVE.search(question):
        top = 1  # "Which city has the most customers?"
    if top is None:
        # "What is the highest price?": an aggregate, not a ranking
        if _MAX.search(question):
            aggregates.add("max")
        if _MIN.search(question):
            aggregates.add("min")
    grouped = any(not m.group("next") or not m.group("next")[0].isupper()
                  for m in _GROUP.finditer(question)
                  if not _SORTED_BY.search(question[max(0, m.start() - 12):m.end()]))
    if not grouped and _EACH.search(question) and (aggregates or top is not None):
        grouped = True  # "How many stores are there in each region?" (not "list every customer")
    counted = _COUNTED.search(question)
    per: list[str] = []
    if grouped:
        for m in _PER.finditer(question):
            per.extend(_key_words(m.group(1)))
        per.extend(_PERIODIC[m.group(0).lower()] for m in _GROUP.finditer(question)
                   if m.group(0).lower() in _PERIODIC)
    if top is not None:
        # "Which 3 stores ...", "Top 3 countries ...": ranked per store, per country
        noun = _TOP_NOUN.search(question) or _WHICH_NOUN.search(question)
        if noun:
            per = [*_key_words(noun.group(1)), *per]
        most = _MOST_OF.search(question)  # "... the most orders": a count of orders
        if most and not counted and words(most.group(1)):
            counted = most
    return Sketch(aggregates=frozenset(aggregates), grouped=grouped, top=top,
                  descending=descending if top is not None else None,
                  distinct=bool(_DISTINCT.search(question)), either=bool(_OR.search(question)),
                  counted=stem(counted.group(1)) if counted else None, per=tuple(per))


__all__ = ["AGGREGATES", "Sketch", "names_table", "sketch", "top_count"]

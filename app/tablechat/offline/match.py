"""Find what a question mentions: keywords, tables, columns, metrics, values, numbers.

Every span of tokens is looked up in the lexicon, the schema phrases and the value index; a
dynamic program then keeps the cover that explains the most tokens with the longest spans. A
span may keep several readings (a word can be a column and a keyword); ``parse.py`` decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .index import SchemaIndex, Target, ValueHit, phrase_words
from .text import (
    AGG_WORDS,
    ASC_WORDS,
    COMPARISONS,
    COUNT_PHRASES,
    DESC_WORDS,
    DISTINCT_WORDS,
    FILLER,
    GROUP_PHRASES,
    MODE_WORDS,
    MONTHS,
    NEGATIONS,
    NUMBER_WORDS,
    ORDER_PHRASES,
    PROPERTY_COMPARATIVES,
    PROPERTY_SUPERLATIVES,
    STOPWORDS,
    TIME_UNITS,
    Token,
    similar,
)


def _keywords() -> dict[tuple[str, ...], list[tuple[str, Any]]]:
    kw: dict[tuple[str, ...], list[tuple[str, Any]]] = {}

    def add(phrase: str, kind: str, arg: Any = None) -> None:
        readings = kw.setdefault(tuple(phrase.split()), [])
        readings[:] = [r for r in readings if r[0] != kind]
        readings.append((kind, arg))

    for p in GROUP_PHRASES:
        add(p, "group")
    for p in ORDER_PHRASES:
        add(p, "order", "desc" if "descending" in p else "asc" if "ascending" in p else None)
    for w in DESC_WORDS:
        add(w, "dir", "desc")
    for w in ASC_WORDS:
        add(w, "dir", "asc")
    for p in ("alphabetical order", "alphabetic order", "lexicographical order",
              "ascending order", "increasing order", "alphabetically", "alphabetical",
              "ascending alphabetical order"):
        add(p, "sortdir", "asc")
    for p in ("descending order", "decreasing order", "reverse order",
              "reversed lexicographical order", "reverse alphabetical order",
              "descending alphabetical order", "reverse lexicographical order",
              "reversed alphabetical order", "descending lexicographical order"):
        add(p, "sortdir", "desc")
    for w, func in AGG_WORDS.items():
        add(w, "agg", func)
    for p, func in (("on average", "avg"), ("in total", "total"), ("the most", "max"),
                    ("the least", "min"), ("the fewest", "min"), ("sum of", "sum"),
                    ("the largest number of", "maxcount"), ("the greatest number of", "maxcount"),
                    ("the highest number of", "maxcount"), ("most number of", "maxcount"),
                    ("the most number of", "maxcount"), ("the smallest number of", "mincount"),
                    ("the fewest number of", "mincount"), ("least number of", "mincount"),
                    ("the least number of", "mincount"), ("the lowest number of", "mincount"),
                    ("largest number of", "maxcount"), ("greatest number of", "maxcount"),
                    ("highest number of", "maxcount"), ("fewest number of", "mincount"),
                    ("smallest number of", "mincount"), ("lowest number of", "mincount"),
                    ("most recent", "latest"), ("most recently", "latest")):
        add(p, "agg", func)
    for p in COUNT_PHRASES:
        add(p, "count")
    for p, op in COMPARISONS.items():
        if p.split()[0] not in PROPERTY_COMPARATIVES:
            add(p, "cmp", op)
    for w, (op, props) in PROPERTY_COMPARATIVES.items():
        add(w, "cmpprop", (op, props))
        add(f"{w} than", "cmpprop", (op, props))
    for w, (func, props) in PROPERTY_SUPERLATIVES.items():
        add(w, "supprop", (func, props))
    for p in ("other than", "different from", "not equal to", "is not", "are not", "does not",
              "do not", "did not", "not in"):
        add(p, "neg")
    for w in NEGATIONS:
        add(w, "neg")
    add("between", "between")
    for w in DISTINCT_WORDS:
        add(w, "distinct")
    for w in MODE_WORDS:
        add(w, "mode")
    # "popular" is left out: it may mean the most rows, a share or a rating; a semantic
    # layer that defines it (the demo's "most popular" = units sold) still answers
    for p in ("most common", "most frequent", "most often", "most frequently",
              "most commonly", "the most common", "the most frequent"):
        add(p, "mode", "max")
    for p in ("least common", "least frequent", "the least common", "least frequently"):
        add(p, "mode", "min")
    add("top", "top", "desc")
    add("bottom", "top", "asc")
    for w in ("or", "nor"):
        add(w, "or")
    for w in ("and", "but", "as well as", "along with", "together with", "plus"):
        add(w, "and")
    add("only", "only")
    add("both", "both")
    for p in ("all the information", "all information", "all the info", "all the details",
              "all details", "all the data", "all data", "everything", "all the columns",
              "all columns", "all the records", "all records", "all the attributes"):
        add(p, "star")
    add("just", "only")
    add("instead", "instead")
    for p in ("what about", "how about", "and what about", "same for", "what if"):
        add(p, "whatabout")
    for p, mode in (("contains", "contains"), ("containing", "contains"), ("contain", "contains"),
                    ("include", "contains"), ("includes", "contains"), ("substring", "contains"),
                    ("like", "contains"), ("the word", "contains"), ("the letter", "contains"),
                    ("the substring", "contains"), ("starts with", "prefix"),
                    ("starting with", "prefix"), ("start with", "prefix"),
                    ("begins with", "prefix"), ("beginning with", "prefix"),
                    ("begin with", "prefix"), ("ends with", "suffix"), ("ending with", "suffix"),
                    ("end with", "suffix")):
        add(p, "like", mode)
    for w, m in MONTHS.items():
        if w != "may":
            add(w, "month", m)
    for w, unit in TIME_UNITS.items():
        add(w, "unit", unit)
    for i in range(1, 5):
        add(f"q{i}", "quarter", i)
    add("h1", "half", 1)
    add("h2", "half", 2)
    add("half", "halfword")
    for p in ("how much", "how much of"):
        add(p, "howmuch")
    for p in ("break down", "breakdown of", "broken down", "split", "distribution of"):
        add(p, "breakdown")
    for w in ("last", "past", "previous", "recent", "preceding"):
        add(w, "recent")
    for p in ("year to date", "ytd"):
        add(p, "ytd")
    for w in ("this", "current"):
        add(w, "this")
    add("ago", "ago")
    add("then", "then")
    return kw


KEYWORDS = _keywords()
MAX_KW = max(len(k) for k in KEYWORDS)


@dataclass(slots=True)
class Mention:
    kind: str  # kw, schema, value, number, quoted
    start: int
    end: int
    quality: float = 1.0
    kw: str = ""
    arg: Any = None
    targets: tuple[Target, ...] = ()
    hits: tuple[ValueHit, ...] = ()
    fuzzy: bool = False


@dataclass(slots=True)
class Slot:
    start: int
    end: int
    mentions: list[Mention] = field(default_factory=list)

    def get(self, kind: str, kw: str | None = None) -> Mention | None:
        for m in self.mentions:
            if m.kind == kind and (kw is None or m.kw == kw):
                return m
        return None

    @property
    def is_kw(self) -> bool:
        return any(m.kind == "kw" for m in self.mentions)


def find_slots(tokens: list[Token], index: SchemaIndex) -> list[Slot]:
    """The best cover of the question by mentions, in token order."""
    stems = [t.stem for t in tokens]
    cands = _candidates(tokens, stems, index, fuzzy=False)
    content = [0 if t.kind == "punct" or t.norm in STOPWORDS else 1 for t in tokens]
    covered = {i for m in cands for i in range(m.start, m.end)
               if m.kind != "kw" or m.kw not in ("agg",)}
    loose = [i for i, t in enumerate(tokens) if t.kind == "word" and i not in covered
             and t.norm not in STOPWORDS and t.norm not in FILLER and len(t.norm) >= 5]
    if loose:
        fixed = list(stems)
        changed = False
        for i in loose:
            norm = tokens[i].norm
            best = next((w for w in index.vocab_list if similar(stems[i], w)
                         or similar(norm, w + "s")), None)
            if best is not None and best != stems[i]:
                fixed[i] = best
                changed = True
        if changed:
            cands += [m for m in _candidates(tokens, fixed, index, fuzzy=False)
                      if any(fixed[k] != stems[k] for k in range(m.start, m.end))
                      and m.kind == "schema"]
            for m in cands:
                if any(fixed[k] != stems[k] for k in range(m.start, m.end)):
                    m.fuzzy = True
                    m.quality *= 0.85
                    m.targets = tuple(Target(t.kind, t.table, t.column, round(t.weight * 0.85, 3))
                                      for t in m.targets)
        cands += _fuzzy_values(tokens, stems, loose, index)
    return _best_cover(len(tokens), cands, content)


def _candidates(tokens: list[Token], stems: list[str], index: SchemaIndex,
                *, fuzzy: bool) -> list[Mention]:
    out: list[Mention] = []
    n = len(tokens)
    norms = [t.norm for t in tokens]
    for i, tok in enumerate(tokens):
        if tok.kind == "quoted":
            words = phrase_words(tok.text)
            hits = tuple(h for h in index.values.get(words, ())
                         if str(h.value).strip().lower() == tok.norm.strip())
            hits = hits or tuple(index.values.get(words, ()))
            out.append(Mention("quoted", i, i + 1, 1.0, arg=tok.text, hits=hits))
            continue
        if tok.kind == "number":
            out.append(Mention("number", i, i + 1, 1.0, arg=tok.value))
            continue
        if tok.kind == "punct":
            if tok.norm == ",":
                out.append(Mention("kw", i, i + 1, 0.2, kw="comma"))
            continue
        if tok.norm in NUMBER_WORDS:
            out.append(Mention("number", i, i + 1, 0.9, arg=float(NUMBER_WORDS[tok.norm])))
        for length in range(min(MAX_KW, n - i), 0, -1):
            key = tuple(norms[i:i + length])
            for kind, arg in KEYWORDS.get(key, ()):
                out.append(Mention("kw", i, i + length, 0.98, kw=kind, arg=arg))
        for length in range(min(max(index.max_phrase, 3), n - i), 0, -1):
            if any(tokens[k].kind != "word" for k in range(i, i + length)):
                continue
            words = tuple(stems[i:i + length])
            if words[0] in STOPWORDS or (words[-1] in STOPWORDS and words[-1] != "no"):
                continue
            targets = index.phrases.get(words)
            if targets is None and 1 < length <= 3:
                targets = index.phrases.get(("".join(words),))
            if targets is None and length > 2 and any(w in ("of", "the") for w in words[1:-1]):
                targets = index.phrases.get(tuple(w for w in words if w not in ("of", "the")))
            if targets:
                q = max(t.weight for t in targets)
                out.append(Mention("schema", i, i + length, q, targets=tuple(targets)))
        for length in range(min(index.max_value, n - i), 0, -1):
            if any(tokens[k].kind not in ("word", "number") for k in range(i, i + length)):
                continue
            words = tuple(stems[i:i + length])
            found = index.values.get(words)
            if not found:
                continue
            if length == 1 and (words[0] in STOPWORDS or len(words[0]) < 2
                                or tokens[i].kind == "number"):
                continue
            out.append(Mention("value", i, i + length, 0.95, hits=tuple(found)))
    return out


def _fuzzy_values(tokens: list[Token], stems: list[str], loose: list[int],
                  index: SchemaIndex) -> list[Mention]:
    out: list[Mention] = []
    loose_set = set(loose)
    for i in loose:
        for length in (1, 2, 3):
            span = range(i, i + length)
            if i + length > len(tokens) or any(
                    tokens[k].kind != "word" or (k not in loose_set and k != i + length - 1)
                    for k in span):
                continue
            words = tuple(stems[k] for k in span)
            joined = "".join(words)
            for cand in index.value_words.get((joined[0], length), ()):
                if cand != words and similar(joined, "".join(cand)):
                    out.append(Mention("value", i, i + length, 0.8, hits=tuple(index.values[cand]),
                                       fuzzy=True))
                    break
    return out


def _best_cover(n: int, cands: list[Mention], content: list[int]) -> list[Slot]:
    by_span: dict[tuple[int, int], Slot] = {}
    for m in cands:
        slot = by_span.setdefault((m.start, m.end), Slot(m.start, m.end))
        slot.mentions.append(m)

    def score(slot: Slot) -> float:
        length = max(sum(content[slot.start:slot.end]), 0.5)
        q = max(m.quality for m in slot.mentions)
        return q * length * (1 + 0.25 * (length - 1)) + 0.01 * (slot.end - slot.start)

    starts: dict[int, list[Slot]] = {}
    for slot in by_span.values():
        starts.setdefault(slot.start, []).append(slot)
    best: list[tuple[float, list[Slot]]] = [(0.0, [])] * (n + 1)
    for i in range(n - 1, -1, -1):
        best_here = best[i + 1]
        for slot in starts.get(i, ()):
            s = score(slot) + best[slot.end][0]
            if s > best_here[0] + 1e-9:
                best_here = (s, [slot, *best[slot.end][1]])
        best[i] = best_here
    return best[0][1]

"""Reusing a verified example's SQL for a question that differs only in its values.

"How many car makers are there in france?" → ``... WHERE CountryName = 'france'`` verified;
"How many car makers are there in germany?" lines its words up with the example's, finds that
``france`` (a literal of the SQL) was replaced by ``germany``, and gets the same SQL with that
literal changed. SQL is changed through sqlglot expressions, never by string formatting.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from sqlglot import exp, parse_one
from sqlglot.errors import SqlglotError

_TOKEN_RE = re.compile(r"'[^']*'|\"[^\"]*\"|\d+(?:\.\d+)?|[^\W_]+|\S")
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")


@dataclass(slots=True)
class Adapted:
    """An example's SQL adapted to a new question."""

    sql: str
    values: dict[str, str] = field(default_factory=dict)  # the example's value → the new one


def _tokens(text: str) -> list[tuple[str, str, int, int]]:
    """(as typed, comparable, start, end) for each word, number, quoted string or symbol."""
    out = []
    for m in _TOKEN_RE.finditer(text):
        raw, start, end = m.group(), m.start(), m.end()
        if raw[0] in "'\"" and len(raw) > 1:
            raw, start, end = raw[1:-1], start + 1, end - 1
        out.append((raw, raw.lower(), start, end))
    return out


def _key(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def _recase(literal: str, typed_before: str, typed_now: str) -> str:
    """The new value, cased the way the example's SQL cased the old one."""
    if literal == typed_before:
        return typed_now
    if literal == typed_before.lower():
        return typed_now.lower()
    if literal == typed_before.upper():
        return typed_now.upper()
    if literal == typed_before.title():
        return typed_now.title()
    return typed_now


def adapt(example_question: str, example_sql: str, question: str, dialect: str
          ) -> Adapted | None:
    """``example_sql`` with the values ``question`` changes substituted, or None when the
    values do not line up (a value of the example missing from the question, or a number of
    the question that the SQL does not use)."""
    try:
        tree = parse_one(example_sql, read=dialect)
    except SqlglotError:
        return None
    literals = [lit for lit in tree.find_all(exp.Literal) if lit.this not in ("", None)]
    old, new = _tokens(example_question), _tokens(question)
    in_old = " ".join(_key(t[1]) for t in old)
    replaced: dict[str, tuple[str, str]] = {}  # key of an old value → (typed old, typed new)
    matcher = difflib.SequenceMatcher(None, [t[1] for t in old], [t[1] for t in new],
                                      autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "replace":
            # the words as typed, spacing and punctuation inside them included
            before = example_question[old[i1][2]:old[i2 - 1][3]]
            after = question[new[j1][2]:new[j2 - 1][3]]
            replaced[_key(before)] = (before, after)
    values: dict[str, str] = {}
    for lit in literals:
        key = _key(str(lit.this))
        if not key or (f" {key} " not in f" {in_old} " and key not in in_old.replace(" ", "")):
            continue  # a value the question never said ("LIMIT 1" for "the most"): keep it
        if key in replaced:
            before, after = replaced[key]
            if lit.is_number:
                if not _NUMBER_RE.fullmatch(after):
                    return None
                lit.replace(exp.Literal.number(after))
            else:
                lit.replace(exp.Literal.string(_recase(str(lit.this), before, after)))
            values[before] = after
        elif key not in _key(question):
            return None  # the example's value is not in the question, nor replaced
    used = {str(lit.this) for lit in tree.find_all(exp.Literal)}
    for typed, *_ in new:
        if _NUMBER_RE.fullmatch(typed) and not any(_same_number(typed, u) for u in used):
            return None  # a number the question asks about that the SQL ignores
    return Adapted(tree.sql(dialect=dialect), values)

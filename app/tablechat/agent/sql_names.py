"""Names in generated SQL and GBNF text: how a schema name is written in a dialect's SQL
(bare or quoted), GBNF literals, alternations and character classes, and a "word that is none of
these" rule (a column alias that sqlglot reads as one). Used by :mod:`.grammar`."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

_PLAIN = re.compile(r"^[a-z_][a-z0-9_]*$")
# DuckDB's reserved words (duckdb_keywords(), category 'reserved'): never a bare name, whatever
# sqlglot's parser would accept
_RESERVED_WORDS = """
all analyse analyze and any array as asc asymmetric both case cast check collate column
constraint create default deferrable desc describe distinct do else end except false fetch for
foreign from group having in initially intersect into lambda lateral leading limit not null
offset on only or order pivot pivot_longer pivot_wider placing primary qualify references
returning select show some summarize symmetric table then to trailing true union unique unpivot
using variadic when where window with
"""
RESERVED = frozenset(_RESERVED_WORDS.split())
# words sqlglot will not take as a column alias even after AS (measured on sqlglot 30 over every
# keyword of the duckdb, postgres, sqlite and mysql tokenizers: these three only)
BAD_ALIASES = ("not", "select", "mod")

MAX_ALIAS = 30  # characters of a column alias


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal: quotes and backslashes escaped, and every character
    that is not printable (controls, line separators such as U+0085 and U+2028, format
    characters) as ``\\uHHHH``/``\\UHHHHHHHH``, which llama.cpp and xgrammar both read; the
    rest as UTF-8."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif not ch.isprintable():
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


@functools.lru_cache(maxsize=8192)
def sql_name(name: str, dialect: str = "duckdb") -> str:
    """How SQL in ``dialect`` names ``name``: bare when it is plain lower case, not reserved,
    and parses back as itself (as a column and as a table); else quoted the dialect's way."""
    if _PLAIN.match(name) and name not in RESERVED:
        try:
            tree = sqlglot.parse_one(f"SELECT {name} FROM {name}", read=dialect)
        except SqlglotError:
            tree = None
        source = tree.find(exp.Table) if isinstance(tree, exp.Select) else None
        if (isinstance(tree, exp.Select) and isinstance(tree.selects[0], exp.Column)
                and tree.selects[0].name == name and not tree.selects[0].table
                and source is not None and source.name == name):
            return name
    return exp.to_identifier(name, quoted=True).sql(dialect=dialect)


def usable(name: str) -> bool:
    """Names a grammar can carry: not empty, encodable as UTF-8 (no lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return bool(name)


def alternatives(words: Iterable[str]) -> str:
    """A GBNF alternation of literal strings, each once, in a stable order."""
    unique = sorted(set(words))
    return " | ".join(gbnf_literal(w) for w in unique)


def char_class(chars: Iterable[str]) -> str:
    """A GBNF character class of ``chars`` (letters, digits, '_' only), as ranges."""
    codes = sorted({ord(c) for c in chars})
    parts, i = [], 0
    while i < len(codes):
        j = i
        while j + 1 < len(codes) and codes[j + 1] == codes[j] + 1:
            j += 1
        lo, hi = chr(codes[i]), chr(codes[j])
        parts.append(lo if i == j else f"{lo}-{hi}" if j > i + 1 else lo + hi)
        i = j + 1
    return "[" + "".join(parts) + "]"


_FIRST = set("abcdefghijklmnopqrstuvwxyz_")
_REST = _FIRST | set("0123456789")


def word_except(name: str, excluded: Iterable[str], max_len: int = MAX_ALIAS) -> dict[str, str]:
    """Rules for a lower-case word (``[a-z_][a-z0-9_]*``, at most ``max_len`` characters) that is
    none of ``excluded``: a trie of the excluded words, each node offering its children, any
    other character (then any tail), or the end unless the prefix is itself excluded."""
    words = {w for w in excluded if w and _PLAIN.match(w) and len(w) <= max_len}
    prefixes = sorted({w[:i] for w in words for i in range(len(w))}, key=lambda p: (len(p), p))
    ids = {p: f"{name}-{n}" if p else name for n, p in enumerate(prefixes)}
    rules: dict[str, str] = {}
    for prefix in prefixes:
        allowed = _FIRST if not prefix else _REST
        children = sorted({w[len(prefix)] for w in words if w.startswith(prefix)
                           and len(w) > len(prefix)})
        tail = max_len - len(prefix) - 1
        options = []
        for ch in children:
            nxt = prefix + ch
            if nxt in ids:  # a longer excluded word continues from here
                options.append(f'"{ch}" {ids[nxt]}')
            elif nxt in words:  # excluded as it stands: one more character at least
                if tail > 0:
                    options.append(f'"{ch}" [a-z0-9_]{{1,{tail}}}')
            else:
                options.append(f'"{ch}" [a-z0-9_]{{0,{tail}}}')
        others = allowed - set(children)
        if others:
            options.append(f"{char_class(others)} [a-z0-9_]{{0,{tail}}}")
        body = " | ".join(options)
        if prefix and prefix not in words:
            body = f"({body})?"
        rules[ids[prefix]] = body
    if not prefixes:
        rules[name] = f"[a-z_] [a-z0-9_]{{0,{max_len - 1}}}"
    return rules



__all__ = ["BAD_ALIASES", "MAX_ALIAS", "RESERVED", "alternatives", "char_class", "gbnf_literal",
           "sql_name", "usable", "word_except"]

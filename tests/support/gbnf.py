"""A structural check of GBNF text as llama.cpp's and xgrammar's parsers read it, and a
translation of its non-recursive rules into Python regular expressions, for tests.

``check(text)`` raises ``GBNFError`` on: a line that is not ``name ::= body``, a rule name
outside ``[a-zA-Z][a-zA-Z0-9-]*``, a rule defined twice, a reference to an undefined rule, no
``root``, an unbalanced group, an escape llama.cpp does not read, an unterminated literal or
class, a bad ``{m,n}``. ``regex(rules, name)`` expands ``name`` (which must not reach itself)
into a regex, so a test can ask which strings a rule admits.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9-]*")
_ESCAPES = set('\\"nrt[]')  # plus \xHH, \uHHHH, \UHHHHHHHH
_HEX = {"x": 2, "u": 4, "U": 8}


class GBNFError(ValueError):
    """The grammar text would not load."""


def _escape(body: str, i: int) -> tuple[str, int]:
    """The character an escape at ``body[i] == '\\\\'`` stands for, and the index after it."""
    if i + 1 >= len(body):
        raise GBNFError("escape at the end of a rule")
    kind = body[i + 1]
    if kind in _HEX:
        digits = body[i + 2:i + 2 + _HEX[kind]]
        if len(digits) != _HEX[kind] or not all(c in "0123456789abcdefABCDEF" for c in digits):
            raise GBNFError(f"bad \\{kind} escape")
        return chr(int(digits, 16)), i + 2 + _HEX[kind]
    if kind not in _ESCAPES:
        raise GBNFError(f"unknown escape \\{kind}")
    return {"n": "\n", "r": "\r", "t": "\t"}.get(kind, kind), i + 2


def tokens(body: str) -> list[tuple[str, str]]:
    """(kind, value) pairs: lit (the decoded string), class (as written), ref, op."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == " ":
            i += 1
        elif c == '"':
            j, text = i + 1, []
            while True:
                if j >= len(body):
                    raise GBNFError("unterminated literal")
                if body[j] == '"':
                    break
                if body[j] == "\\":
                    ch, j = _escape(body, j)
                else:
                    ch, j = body[j], j + 1
                text.append(ch)
            out.append(("lit", "".join(text)))
            i = j + 1
        elif c == "[":
            j = i + 1
            while j < len(body) and body[j] != "]":
                j = _escape(body, j)[1] if body[j] == "\\" else j + 1
            if j >= len(body):
                raise GBNFError("unterminated character class")
            out.append(("class", body[i:j + 1]))
            i = j + 1
        elif c == "{":
            j = body.index("}", i)
            if not re.fullmatch(r"\{\d+(,\d*)?\}", body[i:j + 1]):
                raise GBNFError(f"bad repetition {body[i:j + 1]}")
            out.append(("op", body[i:j + 1]))
            i = j + 1
        elif c in "()|?*+":
            out.append(("op", c))
            i += 1
        else:
            m = _NAME.match(body, i)
            if not m:
                raise GBNFError(f"unexpected {c!r}")
            out.append(("ref", m.group()))
            i = m.end()
    return out


def check(text: str) -> dict[str, list[tuple[str, str]]]:
    """The rules of ``text`` as token lists; raises :class:`GBNFError` if it would not load."""
    rules: dict[str, list[tuple[str, str]]] = {}
    for line in text.split("\n"):  # llama.cpp ends a rule at \n only, not at U+2028
        if not line.strip():
            continue
        name, sep, body = line.partition(" ::= ")
        if not sep or not _NAME.fullmatch(name):
            raise GBNFError(f"not a rule: {line[:60]!r}")
        if name in rules:
            raise GBNFError(f"rule {name} defined twice")
        toks = tokens(body)
        depth = 0
        for kind, value in toks:
            if (kind, value) == ("op", "("):
                depth += 1
            elif (kind, value) == ("op", ")"):
                depth -= 1
                if depth < 0:
                    raise GBNFError(f"unbalanced ) in {name}")
        if depth:
            raise GBNFError(f"unbalanced ( in {name}")
        rules[name] = toks
    if "root" not in rules:
        raise GBNFError("no root rule")
    for name, toks in rules.items():
        for kind, value in toks:
            if kind == "ref" and value not in rules:
                raise GBNFError(f"{name} refers to undefined rule {value}")
    return rules


def regex(rules: dict[str, list[tuple[str, str]]], name: str, _seen: tuple[str, ...] = (),
          *, cut: bool = False) -> str:
    """``name`` as a Python regex (rules it reaches must not be recursive; with ``cut``, a
    rule inside itself matches nothing: the sentences without that nesting)."""
    if name in _seen:
        if cut:
            return "(?!)"
        raise GBNFError(f"{name} is recursive")
    parts = []
    for kind, value in rules[name]:
        if kind == "lit":
            parts.append(re.escape(value))
        elif kind == "class":
            parts.append(value)
        elif kind == "ref":
            parts.append("(?:" + regex(rules, value, (*_seen, name), cut=cut) + ")")
        elif value == "(":
            parts.append("(?:")
        else:
            parts.append(value)
    return "".join(parts)


def admits(text: str, sentence: str) -> bool:
    """Whether the grammar ``text`` admits ``sentence`` (without nested conditions)."""
    return re.fullmatch(regex(check(text), "root", cut=True), sentence) is not None


def literals(rules: dict[str, list[tuple[str, str]]], name: str) -> set[str]:
    """The string literals written in rule ``name``."""
    return {value for kind, value in rules[name] if kind == "lit"}

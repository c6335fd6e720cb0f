"""Random sentences of a GBNF grammar (as ``tests/support/gbnf.py`` reads it), for property
tests: every sentence the SQL grammar admits must be SQL the guard passes and DuckDB runs.

``sample(rules, rng)`` expands ``root``; past ``depth`` nested rules it takes each
alternation's shortest-looking alternative and no optional part, so it always ends.
"""

from __future__ import annotations

import random
import re
from typing import Any

Node = tuple[str, Any]  # ("lit", str) | ("class", str) | ("ref", str) | ("seq", [Node])
#                        | ("alt", [Node]) | ("rep", (Node, lo, hi))


def _parse(tokens: list[tuple[str, str]]) -> Node:
    pos = 0

    def alternation() -> Node:
        nonlocal pos
        options = [sequence()]
        while pos < len(tokens) and tokens[pos] == ("op", "|"):
            pos += 1
            options.append(sequence())
        return options[0] if len(options) == 1 else ("alt", options)

    def sequence() -> Node:
        nonlocal pos
        items: list[Node] = []
        while pos < len(tokens) and tokens[pos] not in (("op", "|"), ("op", ")")):
            kind, value = tokens[pos]
            pos += 1
            if (kind, value) == ("op", "("):
                node = alternation()
                pos += 1  # ")"
            else:
                node = (kind, value)
            while pos < len(tokens) and tokens[pos][0] == "op" and (
                    tokens[pos][1] in "?*+" or tokens[pos][1].startswith("{")):
                op = tokens[pos][1]
                pos += 1
                lo, hi = {"?": (0, 1), "*": (0, 3), "+": (1, 3)}.get(op, (None, None))
                if lo is None:
                    m = re.fullmatch(r"\{(\d+)(,(\d*))?\}", op)
                    assert m is not None
                    lo = int(m.group(1))
                    hi = lo if m.group(2) is None else int(m.group(3) or lo + 3)
                node = ("rep", (node, lo, hi))
            items.append(node)
        return ("seq", items)

    return alternation()


def _class_char(spec: str, rng: random.Random) -> str:
    body = spec[1:-1]
    if body.startswith("^"):
        return rng.choice("abcxyz 0123")
    chars, i = [], 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            chars.extend(chr(c) for c in range(ord(body[i]), ord(body[i + 2]) + 1))
            i += 3
        else:
            chars.append(body[i])
            i += 1
    return rng.choice(chars)


def _size(node: Node) -> int:
    kind, value = node
    if kind in ("lit", "class"):
        return 1
    if kind == "ref":
        return 3
    if kind == "seq":
        return sum(_size(n) for n in value)
    if kind == "alt":
        return min(_size(n) for n in value)
    return _size(value[0]) * value[1]


def sample(rules: dict[str, list[tuple[str, str]]], rng: random.Random, *,
           start: str = "root", depth: int = 12) -> str:
    """One random sentence of rule ``start``."""
    parsed = {name: _parse(toks) for name, toks in rules.items()}
    out: list[str] = []

    def walk(node: Node, level: int) -> None:
        kind, value = node
        if kind == "lit":
            out.append(value)
        elif kind == "class":
            out.append(_class_char(value, rng))
        elif kind == "ref":
            walk(parsed[value], level + 1)
        elif kind == "seq":
            for item in value:
                walk(item, level)
        elif kind == "alt":
            walk(rng.choice(value) if level < depth else min(value, key=_size), level)
        else:
            item, lo, hi = value
            times = rng.randint(lo, hi if level < depth else lo)
            for _ in range(times):
                walk(item, level)

    walk(parsed[start], 0)
    return "".join(out)

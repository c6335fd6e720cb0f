"""A GBNF grammar for the SQL reply, built from the schema snapshot.

The grammar admits a DuckDB-flavoured SELECT subset (one SELECT with joins, WHERE, GROUP BY,
HAVING, ORDER BY, LIMIT; aggregates and a few common functions) whose identifiers come only
from the known tables and columns: a model constrained by it cannot name a column that does
not exist (SmolLM2-135M, unconstrained, invents them; issue 13). Sent as llama.cpp's
``grammar`` field, or vLLM's ``structured_outputs`` ``grammar`` (xgrammar reads GBNF).

Table aliases are one or two lower-case letters, and column aliases follow ``AS``; neither can
be confused with a table or column name the schema lacks in a place that needs one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from ..sql.schema import SchemaSnapshot

FUNCTIONS = ("count", "sum", "avg", "min", "max", "round", "lower", "upper", "coalesce",
             "date_trunc", "year", "month", "length", "abs")
_PLAIN = re.compile(r"^[a-z_][a-z0-9_]*$")


def _ident(name: str) -> str:
    """How the SQL names ``name``: bare when plain lower case, else double-quoted."""
    return name if _PLAIN.match(name) else '"' + name.replace('"', '""') + '"'


def _alternatives(words: Iterable[str]) -> str:
    """A GBNF alternation of literal strings (longest first, so none is cut short)."""
    unique = sorted({w for w in words}, key=lambda w: (-len(w), w))
    return " | ".join(json.dumps(w) for w in unique) if unique else '"x"'


def sql_grammar(snapshot: SchemaSnapshot, tables: Iterable[str] | None = None) -> str:
    """The GBNF grammar for one SELECT over ``tables`` (default: every table)."""
    names = [t for t in (tables or snapshot.tables) if t in snapshot.tables]
    infos = [snapshot.tables[n] for n in names]
    columns = [_ident(c.name) for t in infos for c in t.columns]
    qualified = [f"{_ident(t.name)}.{_ident(c.name)}" for t in infos for c in t.columns]
    rules = {
        "root": 'select ";"?',
        "select": '"SELECT " ("DISTINCT ")? items " FROM " source join* where? group? having? '
                  'order? limit?',
        "items": 'item (", " item)*',
        "item": '"*" | expr (" AS " alias)?',
        "source": 'table (" " talias)?',
        "join": '(" JOIN " | " LEFT JOIN ") table (" " talias)? " ON " column " = " column',
        "where": '" WHERE " cond',
        "group": '" GROUP BY " expr (", " expr)*',
        "having": '" HAVING " cond',
        "order": '" ORDER BY " expr (" DESC" | " ASC")? (", " expr (" DESC" | " ASC")?)*',
        "limit": '" LIMIT " [1-9] [0-9]{0,4}',
        "cond": 'pred ((" AND " | " OR ") pred)*',
        "pred": 'expr (" = " | " != " | " <> " | " < " | " > " | " <= " | " >= ") expr'
                ' | expr " IS " ("NOT ")? "NULL" | expr " LIKE " string'
                ' | expr " IN (" expr (", " expr)* ")" | "(" cond ")"',
        "expr": 'term ((" + " | " - " | " * " | " / ") term)*',
        "term": 'column | number | string | call | "(" expr ")"',
        "call": '"count(*)" | fname "(" ("DISTINCT ")? expr (", " expr)* ")"',
        "fname": _alternatives(FUNCTIONS),
        "column": "qcolumn | acolumn | bare",
        "qcolumn": _alternatives(qualified),
        "acolumn": "talias \".\" bare",
        "bare": _alternatives(columns),
        "table": _alternatives(_ident(t.name) for t in infos),
        "talias": "[a-z] [a-z0-9]?",
        "alias": "[a-z_] [a-z0-9_]{0,30}",
        "number": '"-"? [0-9]+ ("." [0-9]+)?',
        "string": "\"'\" [^'\\n]{0,80} \"'\"",
    }
    return "\n".join(f"{name} ::= {body}" for name, body in rules.items()) + "\n"


__all__ = ["FUNCTIONS", "sql_grammar"]

"""Schema-constrained SQL: a GBNF grammar built from a schema snapshot (issue 13).

The grammar admits one SELECT that the guard passes and the database runs:

    SELECT [DISTINCT] items FROM <tables joined on their keys> [WHERE cond]
    [GROUP BY ...] [HAVING cond] [ORDER BY ...] [LIMIT n]

- **Names only from the tables read.** Each small set of tables a query may read (one table,
  or two or three joined on a foreign key: :mod:`.join_paths`) is a branch of its own: its
  columns are its tables' columns only (qualified by the table's name, or bare when no other
  table of the set has the name), and its FROM clause is the join on the declared keys. There
  are no table aliases and no subqueries in FROM: a small model used aliases it never defined
  and names of tables it did not read (measured: 10 of 20 demo replies refused by the guard).
- **Aggregates where SQL allows them.** Select lists are plain (no aggregate), aggregate-only
  (no bare column outside an aggregate), or mixed, and a mixed list must be grouped: on DuckDB
  ``GROUP BY ALL`` (it groups by every plain item, so the grouping is always right), elsewhere
  by expressions. WHERE never holds an aggregate; HAVING compares aggregates.
- **Functions only from the guard's allow-list** (``sql/functions.py``) in the dialect.
- Literals: numbers, strings, ``DATE 'yyyy-mm-dd'``, NULL, TRUE/FALSE, CURRENT_DATE; lists and
  literals are bounded (``{0,n}``) so a rambling model reaches the end of a rule instead of the
  token limit; a select item starts with a name or a call, never a literal (SmolLM2 wrote
  ``SELECT 1000, 1000, ...`` to answer the question rather than query for it).

Keywords are upper case and plain names lower case, so the two never share a prefix the sampler
has to carry. The text is GBNF as llama.cpp reads it, kept to what vLLM's xgrammar reads too:
rule names of letters, digits and ``-``; one rule per line; ``"..."`` literals; classes;
``? * + {m,n}``.

Its size grows with the branches (the expression rules are copied per branch, ~2.5 KB each):
at most ``MAX_BRANCHES``, over at most ``MAX_TABLES`` tables, the most relevant first (pass
``tables``, the schema-linking step's choice, in its order). :func:`grammar_body` gives the
request fields that carry it, per server dialect.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ..errors import ConfigurationError
from ..sql.functions import allowed_names
from ..sql.schema import SchemaSnapshot, TableInfo
from .join_paths import edges_of, from_clauses, table_sets
from .sql_names import (
    BAD_ALIASES,
    RESERVED,
    alternatives,
    gbnf_literal,
    sql_name,
    usable,
    word_except,
)

MAX_STRING = 60  # characters of a string literal
MAX_ITEMS = 4  # select items
MAX_LIST = 20  # values in an IN list
MAX_TABLES = 8  # tables the grammar names (the most relevant first)
MAX_BRANCHES = 12  # table sets (branches); each copies the expression rules

# (function name, GBNF of its arguments, with E for the expression kind); kept only where the
# guard allows the name
# Few: each is a stack llama.cpp's sampler carries at every place a function may start.
_SCALAR = (
    ("abs", "E"), ("lower", "E"), ("upper", "E"), ("length", "E"),
    ("round", 'E (", " [0-9])?'), ("coalesce", 'E ", " E'),
)
_DATES: dict[str, tuple[tuple[str, str], ...]] = {
    "duckdb": (("strftime", 'E ", " string'), ("date_trunc", 'part-str ", " E'),
               ("year", "E"), ("month", "E")),
    "postgres": (("date_trunc", 'part-str ", " E'), ("date_part", 'part-str ", " E'),
                 ("to_char", 'E ", " string')),
    "sqlite": (("strftime", 'string ", " E'), ("date", "E")),
}
_NUMERIC_ONLY = frozenset({"abs", "round"})  # arguments an aggregate's result may fill
_TYPES: dict[str, tuple[str, ...]] = {
    "duckdb": ("INTEGER", "BIGINT", "DOUBLE", "DECIMAL(18, 2)", "VARCHAR", "DATE", "TIMESTAMP"),
    "postgres": ("INTEGER", "BIGINT", "DOUBLE PRECISION", "NUMERIC", "TEXT", "DATE", "TIMESTAMP"),
    "sqlite": ("INTEGER", "REAL", "TEXT"),
}
_PARTS = ("year", "quarter", "month", "week", "day", "hour", "minute")
_ILIKE = frozenset({"duckdb", "postgres"})
_GROUP_ALL = frozenset({"duckdb"})

# Shared rules (no column names in them). Rule names: letters, digits, '-'.
_SHARED = {
    "root": 'query ";"?',
    "limit": '" LIMIT " [1-9] [0-9]{0,5}',
    "cmp": '" = " | " <> " | " != " | " < " | " <= " | " > " | " >= "',
    # flat: precedence changes no sentence of the language, and fewer rules mean fewer stacks
    # for llama.cpp's sampler to carry through every token
    "binop": '" + " | " - " | " * " | " / " | " % " | " || "',
    "dir": '" ASC" | " DESC"',
    "number": '[0-9]{1,7} ("." [0-9]{1,4})?',
    "string": f"\"'\" (\"''\" | [^'\\r\\n]){{0,{MAX_STRING}}} \"'\"",
    "date": "\"DATE '\" [12] [0-9] [0-9] [0-9] \"-\" [01] [0-9] \"-\" [0-3] [0-9] \"'\"",
    "lit": 'number | string | date | "NULL" | "TRUE" | "FALSE" | "CURRENT_DATE"',
}

# One copy per branch (suffix -N): every rule that names a column. ``col`` is the branch's.
# p*: plain expressions (no aggregate); a*: aggregate expressions (columns only inside one).
_FAMILY = {
    # The select list is read as a small state machine, so the three forms share one set of
    # stacks in the sampler: plain items only (p), aggregate items only (a), or both (m),
    # which must be grouped.
    "body": '"*" pclauses | pitem pnext2 | aitem anext2',
    "pclauses": '" FROM " from where? porder? limit?',
    "aclauses": '" FROM " from where? limit?',
    "gclauses": '" FROM " from where? group having? gorder? limit?',
    # a plain item is a name or a call, no arithmetic: SmolLM2 appended "+ 1000000000 % 2022"
    # to the columns it chose (arithmetic stays inside calls and aggregates)
    "pitem": 'plead (" AS " alias)?',
    "aitem": 'alead (binop afactor){0,3} (" AS " alias)?',
    "plead": "col | pcall | pcase | pcast",
    "alead": "agg | acall",
    "pexpr": "pfactor (binop pfactor){0,5}",
    # no signed numbers: "- -1" is fine, "--1" would open a comment
    "pfactor": '"-"? patom',
    "patom": 'col | lit | pcall | pcase | pcast | "(" pcond ")"',
    "pcase": '"CASE" (" WHEN " pcond " THEN " pexpr){1,5} (" ELSE " pexpr)? " END"',
    "pcast": '"CAST(" pexpr " AS " ctype ")"',
    "pcond": 'pconj (" OR " pconj){0,7}',
    "pconj": 'pneg (" AND " pneg){0,7}',
    "pneg": '"NOT " pneg | ppred',
    "ppred": "pexpr ptail?",
    "agg": '"count(*)" | ("count" | "sum" | "avg" | "min" | "max") "(" ("DISTINCT ")? pexpr ")"',
    "aexpr": "afactor (binop afactor){0,5}",
    "afactor": '"-"? aatom',
    "aatom": 'agg | number | acall | "(" aexpr ")"',
    "hcond": 'hpred ((" AND " | " OR ") hpred){0,3}',
    "hpred": "aexpr cmp aexpr",
    "where": '" WHERE " pcond',
    "having": '" HAVING " hcond',
    "porder": '" ORDER BY " poitem (", " poitem){0,3}',
    "poitem": "plead dir?",
    # grouped: by an aggregate (a plain column outside the select list would not be grouped)
    "gorder": '" ORDER BY " goitem (", " goitem){0,3}',
    "goitem": "alead (binop afactor){0,3} dir?",
}
# ... and counted, so a model that repeats an item ("SELECT name, name, name, ...", SmolLM2 at
# temperature 0) must move on after MAX_ITEMS
for _k in range(2, MAX_ITEMS + 1):
    _more = _k < MAX_ITEMS
    _FAMILY[f"pnext{_k}"] = (f'", " pitem pnext{_k + 1} | ", " aitem mnext{_k + 1} | pclauses'
                             if _more else "pclauses")
    _FAMILY[f"anext{_k}"] = (f'", " aitem anext{_k + 1} | ", " pitem mnext{_k + 1} | aclauses'
                             if _more else "aclauses")
    _FAMILY[f"mnext{_k}"] = (f'", " (pitem | aitem) mnext{_k + 1} | gclauses'
                             if _more else "gclauses")
del _k, _more
_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|[a-zA-Z][a-zA-Z0-9-]*|.', re.S)
_COPIED = frozenset({*_FAMILY, "col", "from", "group", "ptail", "pcall", "acall"})


def _renamed(body: str, suffix: str) -> str:
    """``body`` with its references to per-branch rules suffixed (literals left alone)."""
    return "".join(t + suffix if t in _COPIED else t for t in _TOKEN.findall(body))


def _calls(dialect: str, kind: str) -> list[str]:
    """Call alternatives over ``kind`` expressions (``pexpr``/``aexpr``), allowed names only."""
    names = allowed_names(dialect)
    known = dialect if dialect in _DATES else "duckdb"
    specs = _SCALAR + _DATES[known] if kind == "pexpr" else [
        s for s in _SCALAR if s[0] in _NUMERIC_ONLY]
    calls = [f'"{fn}(" {args.replace("E", kind)} ")"' for fn, args in specs if fn in names]
    return calls


def _ptail(dialect: str) -> str:
    tails = [
        # one operand on the right: "= '2022-01-01' + 1000000000 + ..." was SmolLM2's
        'cmp (pfactor | "(" query ")")', '" IS " ("NOT ")? "NULL"',
        f'(" NOT")? " IN (" (query | pexpr (", " pexpr){{0,{MAX_LIST - 1}}}) ")"',
        '(" NOT")? " BETWEEN " pexpr " AND " pexpr', '(" NOT")? " LIKE " string',
    ]
    if dialect in _ILIKE:
        tails.append('(" NOT")? " ILIKE " string')
    return " | ".join(tails)


def _choose(snapshot: SchemaSnapshot, tables: Iterable[str] | None) -> list[TableInfo]:
    chosen = [snapshot.tables[n] for n in dict.fromkeys(tables or ()) if n in snapshot.tables]
    infos = chosen or list(snapshot.tables.values())
    return [t for t in infos if usable(t.name) and any(usable(c.name) for c in t.columns)]


def sql_grammar(snapshot: SchemaSnapshot, tables: Iterable[str] | None = None) -> str:
    """The GBNF grammar of one SELECT over ``tables`` of ``snapshot`` (default: all of them;
    unknown names are skipped, so a pick that names none gives every table), at most
    ``MAX_TABLES`` of them (the first given) in at most ``MAX_BRANCHES`` table sets.

    Raises :class:`ConfigurationError` for a snapshot with no named table or column (there is
    nothing to constrain to: send the question unconstrained)."""
    dialect = snapshot.dialect or "duckdb"
    infos = _choose(snapshot, tables)[:MAX_TABLES]
    if not infos:
        raise ConfigurationError("a SQL grammar needs a table with a named column")
    by_name = {t.name: t for t in infos}
    edges = edges_of(by_name)

    def shown(table: str) -> str:
        return sql_name(table, dialect)

    def column(name: str) -> str:
        return sql_name(name, dialect)

    rules = dict(_SHARED)
    cols = {}
    for n, info in enumerate(infos, start=1):
        names = [column(c.name) for c in info.columns if usable(c.name)]
        rules[f"cols-{n}"] = alternatives(names)
        cols[info.name] = (f"cols-{n}", set(names))
    family = dict(_FAMILY)
    family["ptail"] = _ptail(dialect)
    family["pcall"] = " | ".join(_calls(dialect, "pexpr"))
    family["acall"] = " | ".join(_calls(dialect, "aexpr"))
    family["group"] = ('" GROUP BY ALL"' if dialect in _GROUP_ALL
                       else f'" GROUP BY " pexpr (", " pexpr){{0,{MAX_ITEMS - 1}}}')
    rules["part-str"] = alternatives(f"'{p}'" for p in _PARTS)
    rules["ctype"] = alternatives(_TYPES.get(dialect, _TYPES["duckdb"]))
    rules.update(word_except("alias", BAD_ALIASES))
    branches = []
    for n, group in enumerate(table_sets(list(by_name), edges, MAX_BRANCHES), start=1):
        suffix = f"-b{n}"
        for name, body in family.items():
            rules[name + suffix] = _renamed(body, suffix)
        rules["from" + suffix] = alternatives(from_clauses(group, edges, shown, column))
        rules["col" + suffix] = _columns(group, cols, shown)
        branches.append("body" + suffix)
    rules["query"] = f'"SELECT " ("DISTINCT ")? ({" | ".join(branches)})'
    return "\n".join(f"{name} ::= {body}" for name, body in rules.items()) + "\n"


def _columns(group: tuple[str, ...], cols: dict[str, tuple[str, set[str]]],
             shown: Any) -> str:
    """A branch's column reference: qualified by its table's name, or bare where the name is
    one table's only (a bare name two tables share would be ambiguous)."""
    if len(group) == 1:
        rule, _ = cols[group[0]]
        return f"({gbnf_literal(shown(group[0]) + '.')})? {rule}"
    seen: dict[str, int] = {}
    for table in group:
        for name in cols[table][1]:
            seen[name] = seen.get(name, 0) + 1
    parts = [f"{gbnf_literal(shown(t) + '.')} {cols[t][0]}" for t in group]
    unique = [name for name, count in seen.items() if count == 1]
    if unique:
        parts.append(f"({alternatives(unique)})")
    return " | ".join(parts)


# server dialect (the backend's kind) -> how a request carries a grammar
GRAMMAR_FIELDS = {"vllm": "structured_outputs", "llamacpp": "grammar", "embedded": "grammar"}


def grammar_body(dialect: str, grammar: str) -> dict[str, Any]:
    """The extra request body that constrains a chat completion to ``grammar`` on a server of
    ``dialect``: vLLM ``{"structured_outputs": {"grammar": g}}``, llama.cpp (and the embedded
    GGUF backend) ``{"grammar": g}``; ``{}`` for servers with no grammar field (a generic
    OpenAI-compatible server ignores or refuses one)."""
    field = GRAMMAR_FIELDS.get(dialect)
    if field == "structured_outputs":
        return {"structured_outputs": {"grammar": grammar}}
    if field == "grammar":
        return {"grammar": grammar}
    return {}


__all__ = ["GRAMMAR_FIELDS", "MAX_BRANCHES", "MAX_TABLES", "RESERVED", "gbnf_literal",
           "grammar_body", "sql_grammar", "sql_name", "word_except"]

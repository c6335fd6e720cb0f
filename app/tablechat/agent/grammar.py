"""Schema-constrained SQL: a GBNF grammar built from a schema snapshot (issue 13).

The grammar admits one SELECT of a subset every targeted database runs:

    SELECT [DISTINCT] items FROM source [[LEFT|INNER] JOIN table ON cond]* [WHERE cond]
    [GROUP BY exprs] [HAVING cond] [ORDER BY expr [ASC|DESC], ...] [LIMIT n]

where a source is a table (with an optional alias) or a subquery with an alias, and expressions
are column references, literals (numbers, strings, DATE/TIMESTAMP/INTERVAL strings, NULL,
TRUE, FALSE), comparisons, AND/OR/NOT, [NOT] IN (list or subquery), [NOT] BETWEEN, [NOT] LIKE,
IS [NOT] NULL, arithmetic, CASE, CAST, aggregates (``count(*)``, ``count(DISTINCT x)``, sum,
avg, min, max) and a few scalar and date functions, each of them one the guard's allow-list
(``sql/functions.py``) allows in the snapshot's dialect.

Identifiers come only from the schema: table names, column names (bare, or qualified by their
own table's name, or by a table alias), and table aliases from a small fixed set (``t1``..``t9``,
a table's first letter or initials). A model constrained by it cannot name a column that does
not exist. A query over one table names only that table's columns (one branch per table, up to
``MAX_SCOPED_TABLES``); with a JOIN or over a subquery any column of the schema may appear (the
grammar does not follow which tables a join brings), and the guard refuses one of a table the
query does not read, as before. Names that need quoting are
quoted in the dialect's way. Keywords are upper case and plain names lower case, so the two
never share a prefix the sampler has to carry.

The text is GBNF, llama.cpp's format, kept to what vLLM's xgrammar backend reads as well: rule
names of letters, digits and ``-``; one rule per line; ``"..."`` literals with ``\\\\``, ``\\"``
and ``\\xHH`` escapes; character classes; ``? * + {m,n}``. Lists and literals are bounded
(``{0,n}``) so a rambling model reaches the end of a rule instead of the token limit.

Its size grows with the tables: each column name once, once more in its table's list, and the
expression rules once per table for the one-table branches (~17 KB for the 7-table demo, ~2.4 KB
per table more; ~5 KB for one table): pass ``tables`` (the relevance step's choice).
:func:`grammar_body` gives the request fields that carry it, per server dialect.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from ..errors import ConfigurationError
from ..sql.functions import allowed_names
from ..sql.schema import SchemaSnapshot

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
_BAD_ALIASES = ("not", "select", "mod")

TABLE_ALIASES = tuple(f"t{i}" for i in range(1, 10))
MAX_ALIAS = 30  # characters of a column alias
MAX_STRING = 60  # characters of a string literal
MAX_ITEMS = 6  # select items
MAX_LIST = 20  # values in an IN list
MAX_SCOPED_TABLES = 8  # up to this many tables, one-table queries name only their own columns

# dialect -> [(function name, GBNF of its arguments)]; kept only where the guard allows the name
_SCALAR = (
    ("abs", 'expr'), ("lower", 'expr'), ("upper", 'expr'), ("length", 'expr'),
    ("trim", 'expr'), ("round", 'expr (", " [0-9])?'), ("coalesce", 'expr (", " expr){1,3}'),
    ("nullif", 'expr ", " expr'), ("concat", 'expr (", " expr){1,3}'),
)
_DATES: dict[str, tuple[tuple[str, str], ...]] = {
    "duckdb": (("strftime", 'expr ", " string'), ("date_trunc", 'part-str ", " expr'),
               ("date_part", 'part-str ", " expr'), ("year", "expr"), ("month", "expr"),
               ("day", "expr"), ("quarter", "expr")),
    "postgres": (("date_trunc", 'part-str ", " expr'), ("date_part", 'part-str ", " expr'),
                 ("to_char", 'expr ", " string')),
    "sqlite": (("strftime", 'string ", " expr'), ("date", "expr")),
}
_TYPES: dict[str, tuple[str, ...]] = {
    "duckdb": ("INTEGER", "BIGINT", "DOUBLE", "DECIMAL(18, 2)", "VARCHAR", "DATE", "TIMESTAMP"),
    "postgres": ("INTEGER", "BIGINT", "DOUBLE PRECISION", "NUMERIC", "TEXT", "DATE", "TIMESTAMP"),
    "sqlite": ("INTEGER", "REAL", "TEXT"),
}
_PARTS = ("year", "quarter", "month", "week", "day", "hour", "minute")
_ILIKE = frozenset({"duckdb", "postgres"})
_INTERVAL = frozenset({"duckdb", "postgres"})

# The dialect-free part. Rule names: letters, digits, '-' (llama.cpp and xgrammar both read them).
_CORE = {
    "root": 'query ";"?',
    "query": '"SELECT " ("DISTINCT ")? items " FROM " source join{0,4} where? group? having? '
             "order? limit?",
    "items": f'"*" | item (", " item){{0,{MAX_ITEMS - 1}}}',
    # a select item starts with a name or a call, never a literal: asked "how many ...?",
    # SmolLM2 under the grammar wrote "SELECT 1000, 1000, ..." and "SELECT ((-1)) + ..." until
    # the token limit (it wants to answer the question, not to query for it)
    "item": 'lead (binop factor){0,3} (" AS " alias)?',
    "lead": "column | agg | call | case | cast",
    "source": 'table (" " talias)? | "(" query ") " talias',
    # a join reads a table, not a subquery: SmolLM2 nested "LEFT JOIN (SELECT ... LEFT JOIN
    # (SELECT ..." until the token limit
    "join": '" " ("LEFT " | "INNER ")? "JOIN " table (" " talias)? " ON " cond',
    "where": '" WHERE " cond',
    "group": '" GROUP BY " expr (", " expr){0,5}',
    "having": '" HAVING " cond',
    "order": '" ORDER BY " oitem (", " oitem){0,3}',
    "oitem": 'expr (" ASC" | " DESC")?',
    "limit": '" LIMIT " [1-9] [0-9]{0,5}',
    "cond": 'conj (" OR " conj){0,7}',
    "conj": 'neg (" AND " neg){0,7}',
    "neg": '"NOT " neg | pred',
    "pred": "expr ptail?",
    "cmp": '" = " | " <> " | " != " | " < " | " <= " | " > " | " >= "',
    # flat: precedence changes no sentence of the language, and fewer rules mean fewer stacks
    # for llama.cpp's sampler to carry through every token
    "expr": 'factor (binop factor){0,5}',
    "binop": '" + " | " - " | " * " | " / " | " % " | " || "',
    # no signed numbers: "- -1" is fine, "--1" would open a comment
    "factor": '"-"? atom',
    "agg": '"count(*)" | ("count" | "sum" | "avg" | "min" | "max") "(" ("DISTINCT ")? expr ")"',
    "case": '"CASE" (" WHEN " cond " THEN " expr){1,5} (" ELSE " expr)? " END"',
    "cast": '"CAST(" expr " AS " ctype ")"',
    "number": '[0-9]{1,10} ("." [0-9]{1,4})?',
    "string": f"\"'\" (\"''\" | [^'\\r\\n]){{0,{MAX_STRING}}} \"'\"",
}


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


def _usable(name: str) -> bool:
    """Names a grammar can carry: not empty, encodable as UTF-8 (no lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return bool(name)


def _alternatives(words: Iterable[str]) -> str:
    """A GBNF alternation of literal strings, each once, in a stable order."""
    unique = sorted(set(words))
    return " | ".join(gbnf_literal(w) for w in unique)


def _char_class(chars: Iterable[str]) -> str:
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
            options.append(f"{_char_class(others)} [a-z0-9_]{{0,{tail}}}")
        body = " | ".join(options)
        if prefix and prefix not in words:
            body = f"({body})?"
        rules[ids[prefix]] = body
    if not prefixes:
        rules[name] = f"[a-z_] [a-z0-9_]{{0,{max_len - 1}}}"
    return rules


def _table_aliases(table_names: Iterable[str]) -> list[str]:
    """t1..t9, and each table's first letter and initials (``order_items`` → ``o``, ``oi``)."""
    aliases = set(TABLE_ALIASES)
    for table in table_names:
        parts = [p for p in re.split(r"[^a-z0-9]+", table.lower()) if p]
        initials = "".join(p[0] for p in parts if p[0].isalpha())
        aliases.update({initials[:1], initials[:3]} - {""})
    return sorted(a for a in aliases if a not in RESERVED and a not in _BAD_ALIASES)


def _functions(dialect: str) -> list[str]:
    """The ``call`` alternatives for ``dialect``: names the guard allows there, with arities."""
    names = allowed_names(dialect)
    known = dialect if dialect in _DATES else "duckdb"
    calls = [f'"{fn}(" {args} ")"' for fn, args in (*_SCALAR, *_DATES[known]) if fn in names]
    calls.append(f'"extract(" ({_alternatives(_PARTS)}) " FROM " expr ")"')
    return calls


def sql_grammar(snapshot: SchemaSnapshot, tables: Iterable[str] | None = None, *,
                scoped: bool | None = None) -> str:
    """The GBNF grammar of one SELECT over ``tables`` of ``snapshot`` (default: all of them;
    unknown names are skipped, so a relevance pick that names none gives every table).

    ``scoped`` (default: at most ``MAX_SCOPED_TABLES`` tables): a query that reads one table
    names only that table's columns; it multiplies the expression rules by the tables.

    Raises :class:`ConfigurationError` for a snapshot with no named table or column (there is
    nothing to constrain to: send the question unconstrained)."""
    dialect = snapshot.dialect or "duckdb"
    chosen = [snapshot.tables[n] for n in (tables or ()) if n in snapshot.tables]
    infos = chosen or list(snapshot.tables.values())
    infos = [t for t in infos if _usable(t.name)]
    if not infos:
        raise ConfigurationError("a SQL grammar needs at least one table with a name")
    rules = dict(_CORE)
    table_names = [sql_name(t.name, dialect) for t in infos]
    qualified, bare = [], set()
    for n, (info, shown) in enumerate(zip(infos, table_names, strict=True), start=1):
        columns = [sql_name(c.name, dialect) for c in info.columns if _usable(c.name)]
        if columns:
            rules[f"cols-{n}"] = _alternatives(columns)
            qualified.append(f"{gbnf_literal(shown + '.')} cols-{n}")
            bare.update(columns)
    if not bare:
        raise ConfigurationError("a SQL grammar needs at least one column with a name")
    comparisons = [
        'cmp expr', '" IS " ("NOT ")? "NULL"',
        f'(" NOT")? " IN (" (query | expr (", " expr){{0,{MAX_LIST - 1}}}) ")"',
        '(" NOT")? " BETWEEN " expr " AND " expr', '(" NOT")? " LIKE " string',
    ]
    if dialect in _ILIKE:
        comparisons.append('(" NOT")? " ILIKE " string')
    rules["ptail"] = " | ".join(comparisons)
    literals = ['"DATE " string', '"TIMESTAMP " string']
    if dialect in _INTERVAL:
        literals.append('"INTERVAL " string')
    rules["atom"] = " | ".join([
        "column", "number", "string", *literals, '"NULL"', '"TRUE"', '"FALSE"',
        '"CURRENT_DATE"', "agg", "call", "case", "cast", '"(" (cond | query) ")"',
    ])
    rules["call"] = " | ".join(_functions(dialect))
    rules["part-str"] = _alternatives(f"'{p}'" for p in _PARTS)
    rules["ctype"] = _alternatives(_TYPES.get(dialect, _TYPES["duckdb"]))
    rules["column"] = 'qcolumn | talias "." bare | bare'
    rules["qcolumn"] = " | ".join(qualified)
    rules["bare"] = _alternatives(bare)
    rules["table"] = _alternatives(table_names)
    rules["talias"] = _alternatives(_table_aliases(t.name for t in infos))
    rules.update(word_except("alias", _BAD_ALIASES))
    if scoped is None:
        scoped = len(infos) <= MAX_SCOPED_TABLES
    if scoped:
        _scope(rules, [(n, shown) for n, shown in enumerate(table_names, start=1)
                       if f"cols-{n}" in rules])
    return "\n".join(f"{name} ::= {body}" for name, body in rules.items()) + "\n"


# the rules that (through ``column``) name columns: copied once per table for its own branch
_FAMILY = frozenset({
    "items", "item", "lead", "where", "group", "having", "order", "oitem", "cond", "conj", "neg",
    "pred", "ptail", "expr", "factor", "atom", "agg", "case", "cast", "call", "column"})
_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|[a-zA-Z][a-zA-Z0-9-]*|.', re.S)


def _renamed(body: str, suffix: str) -> str:
    """``body`` with its references to the family's rules suffixed (literals left alone)."""
    return "".join(t + suffix if t in _FAMILY else t for t in _TOKEN.findall(body))


def _scope(rules: dict[str, str], tables: list[tuple[int, str]]) -> None:
    """A branch per table for queries that read one table: there a column is one of that
    table's own (``SELECT order_id FROM orders`` is out of the language, where the flat
    grammar admits it and the guard refuses it). Queries with a JOIN, or over a subquery, keep
    the whole schema's names (the grammar does not follow which tables a join brings)."""
    branches = []
    for n, shown in tables:
        suffix = f"-{n}"
        for name in _FAMILY:
            rules[name + suffix] = _renamed(rules[name], suffix)
        rules[f"column{suffix}"] = f'({gbnf_literal(shown + ".")} | talias ".")? cols-{n}'
        rules[f"one{suffix}"] = (f'items{suffix} " FROM " {gbnf_literal(shown)} (" " talias)? '
                                 f"where{suffix}? group{suffix}? having{suffix}? order{suffix}? "
                                 "limit?")
        branches.append(f"one{suffix}")
    rules["query"] = f'"SELECT " ("DISTINCT ")? ({" | ".join([*branches, "multi"])})'
    rules["multi"] = ('items " FROM " (source join{1,4} | "(" query ") " talias) '
                      "where? group? having? order? limit?")


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


__all__ = ["GRAMMAR_FIELDS", "RESERVED", "gbnf_literal", "grammar_body", "sql_grammar",
           "sql_name", "word_except"]

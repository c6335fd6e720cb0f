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
- **Comparisons typed by the column's type** (:func:`_typed`): a number column against a
  number, a text column against a string (one of its values when the snapshot holds them all),
  a date column against a date or its year through ``year(col)`` (the dialect's form), a
  boolean against TRUE/FALSE (SmolLM2 wrote ``order_date = 2023``, ``store_id = 'Berlin'``).
- **The question's shape** (with ``question``): the aggregates, grouping key, ranking,
  filter values and periods its words name (:mod:`.sketch`, :mod:`.periods`; :func:`_shaped`),
  and the fewest tables that hold them (:func:`_needed`).
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
from dataclasses import replace
from typing import Any

from ..errors import ConfigurationError
from ..sql.functions import allowed_names
from ..sql.schema import Column, SchemaSnapshot, TableInfo
from .compact_schema import all_values_known, is_key, label_column
from .join_paths import edges_of, from_clauses, table_sets
from .periods import Period, periods
from .relevance import words
from .sketch import AGGREGATES, Sketch, names_table, sketch, top_count
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
MAX_AGGS = 3  # aggregate items in a select list
# columns of a branch listed one by one for a select list without repeats; a wider branch gets
# a bounded list that may repeat (the one-by-one rules grow with the columns: size and sampler)
MAX_SLOTS = 24
MAX_PLAIN = 4  # plain columns in a select list (SmolLM2 listed a join's every column)
MAX_KEYS = 2  # plain columns before the aggregates of a grouped select list
MAX_LIST = 10  # values in an IN list
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
    "date": "\"DATE '\" [12] [0-9] [0-9] [0-9] \"-\" month-day \"'\"",
    # no month 13, no day 39 (DuckDB refuses them: SmolLM2 wrote DATE '2023-14-39')
    "month-day": '("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | [12] [0-9] | "3" [01])',
    "lit": 'number | string | date | "NULL" | "TRUE" | "FALSE" | "CURRENT_DATE"',
}

# One copy per branch (suffix -N): every rule that names a column. ``col`` is the branch's.
# p*: plain expressions (no aggregate); a*: aggregate expressions (columns only inside one).
_FAMILY = {
    # The select list: plain columns (each at most once, in the schema's order: SmolLM2 at
    # temperature 0 wrote "SELECT customers.country, customers.country, ..." to the reply
    # limit), optionally after one call; or aggregates only; or plain then aggregates, which
    # must be grouped. No column can repeat and every list is bounded, so a model that
    # repeats itself reaches FROM instead of the token limit.
    "body": '"*" pclauses | plist pclauses | pgroup ", " aitem (", " aitem)? gclauses'
            ' | alist aclauses',
    "plist": 'pcols | pfun (", " pcols)?',
    # grouped: at most two keys, then at most two aggregates
    "pgroup": 'pkeys | pfun (", " pkeys)?',
    "pfun": '(pcall | pcase | pcast) (" AS " alias)?',
    "alist": f'aitem (", " aitem){{0,{MAX_AGGS - 1}}}',
    "pclauses": '" FROM " from where? porder? limit?',
    "aclauses": '" FROM " from where? limit?',
    "gclauses": '" FROM " from where? group having? gorder? limit?',
    # an aggregate item: arithmetic between aggregates (a ratio), no bare column
    "aitem": 'alead (binop afactor){0,2} (" AS " alias)?',
    "plead": "col | pcall | pcase | pcast",
    "alead": "agg | acall",
    "pexpr": "pfactor (binop pfactor){0,3}",
    # no signed numbers: "- -1" is fine, "--1" would open a comment
    "pfactor": '"-"? patom',
    # no CASE inside an expression: SmolLM2 nested "CASE WHEN (CASE WHEN (..." to the limit
    "patom": 'col | lit | pcall | pcast | "(" pcond ")"',
    "pcase": '"CASE" (" WHEN " pcond " THEN " pexpr){1,3} (" ELSE " pexpr)? " END"',
    "pcast": '"CAST(" pexpr " AS " ctype ")"',
    "pcond": 'pconj (" OR " pconj){0,2}',
    "pconj": 'pneg (" AND " pneg){0,3}',
    "pneg": '"NOT " ppred | ppred',
    # a bare column is no condition (SmolLM2: "WHERE quantity"); a comparison is typed by the
    # column's type (``typed``: :func:`_typed`)
    "ppred": 'typed | col " IS " ("NOT ")? "NULL"',
    "agg": '"count(*)" | ("count" | "sum" | "avg" | "min" | "max") "(" ("DISTINCT ")? pexpr ")"',
    "aexpr": "afactor (binop afactor){0,3}",
    # a call's arguments: columns and values (plain), aggregates and numbers (aggregate)
    "pargs": "(col | lit) (binop (col | lit)){0,2}",
    "aargs": "agg (binop (agg | number)){0,2}",
    "afactor": '"-"? aatom',
    "aatom": 'agg | number | acall | "(" aexpr ")"',
    "hcond": 'hpred ((" AND " | " OR ") hpred){0,1}',
    "hpred": "aexpr cmp aexpr",
    "where": '" WHERE " pcond',
    "having": '" HAVING " hcond',
    "porder": '" ORDER BY " poitem (", " poitem){0,1}',
    "poitem": "plead dir?",
    # grouped: by an aggregate (a plain column outside the select list would not be grouped)
    "gorder": '" ORDER BY " goitem (", " goitem){0,1}',
    "goitem": "alead (binop afactor){0,2} dir?",
}
_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|[a-zA-Z][a-zA-Z0-9-]*|.', re.S)
_COPIED = frozenset({*_FAMILY, "col", "from", "group", "pcall", "acall", "pcols",
                     "pkeys", "typed"})


def _renamed(body: str, suffix: str) -> str:
    """``body`` with its references to per-branch rules suffixed (literals left alone)."""
    return "".join(t + suffix if t in _COPIED else t for t in _TOKEN.findall(body))


def _drop_missing(rules: dict[str, str], family: dict[str, str]) -> None:
    """Leave out every alternative that names a literal rule the question gave no value for
    (``number``, ``string``, ``date``, ``lit``), in ``family``'s rules (and the shared ones);
    the functions whose arguments need one go with them."""
    missing = {"number", "string", "date", "lit"} - set(rules)
    if not missing:
        return
    for table in (rules, family):
        for name, body in list(table.items()):
            if not any(m in _TOKEN.findall(body) for m in missing):
                continue
            kept = [alt for alt in _split_top(body)
                    if not any(m in _TOKEN.findall(alt) for m in missing)]
            table[name] = " | ".join(kept) if kept else '"NULL"'


def _split_top(body: str) -> list[str]:
    """``body``'s top-level alternatives (``|`` outside brackets, quotes and classes)."""
    parts, depth, start = [], 0, 0
    tokens = list(_TOKEN.finditer(body))
    for t in tokens:
        text = t.group(0)
        if text == "(":
            depth += 1
        elif text == ")":
            depth -= 1
        elif text == "|" and depth == 0:
            parts.append(body[start:t.start()].strip())
            start = t.end()
    parts.append(body[start:].strip())
    return parts


def _calls(dialect: str, kind: str) -> list[str]:
    """Call alternatives over ``kind`` arguments (``pargs``/``aargs``: no call inside a call,
    SmolLM2 wrote ``round(round(round(...`` to the limit), allowed names only."""
    names = allowed_names(dialect)
    known = dialect if dialect in _DATES else "duckdb"
    specs = _SCALAR + _DATES[known] if kind == "pargs" else [
        s for s in _SCALAR if s[0] in _NUMERIC_ONLY]
    calls = [f'"{fn}(" {args.replace("E", kind)} ")"' for fn, args in specs if fn in names]
    return calls


# ``year(col) = 2023`` and its kin, per dialect: (the call, the function the guard must allow,
# whether the year is written as a string)
_YEAR_FORMS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "duckdb": (('"year(" D ")"', "year", False), ('"extract(year FROM " D ")"', "extract", False)),
    "postgres": (('"extract(year FROM " D ")"', "extract", False),
                 ('"date_part(\'year\', " D ")"', "date_part", False)),
    "sqlite": (('"strftime(\'%Y\', " D ")"', "strftime", True),),
}
_EQ = '" = " | " <> " | " != "'
_BOOL = '"TRUE" | "FALSE"'


def _ref(table: str, column: str, group: tuple[str, ...], infos: dict[str, TableInfo],
         shown: Any, name_of: Any) -> str:
    """A column as a branch names it: qualified, or bare too where no other table of the
    branch has the name."""
    prefix = gbnf_literal(shown(table) + ".")
    name = gbnf_literal(name_of(column))
    shared = sum(1 for t in group for c in infos[t].columns if c.name == column)
    return f"({prefix})? {name}" if shared == 1 else f"{prefix} {name}"


def _linked(found: list[tuple[str, Column]], asked: set[str] | None) -> list[str]:
    """The references of ``found`` a question's comparison may use: with the question's words
    (``asked``), the columns that are no key and whose names share a word with it ("list
    price above $300": ``unit_price``, not ``category_id``), else the columns that are no
    key, else all."""
    if asked is None:
        return [ref for ref, _ in found]
    plain = [(ref, c) for ref, c in found if not is_key(c)]
    named = [ref for ref, c in plain if words(c.name) & asked]
    return named or [ref for ref, _ in plain] or [ref for ref, _ in found]


def _typed(group: tuple[str, ...], infos: dict[str, TableInfo], rules: dict[str, str],
           texts: dict[tuple[str, str], str | None], dialect: str, shown: Any, name_of: Any,
           suffix: str, asked: set[str] | None = None,
           spans: list[Period] | None = None) -> dict[str, str]:
    """``typed<suffix>``: the branch's comparisons, each between a column and a literal of its
    type (issue 13: SmolLM2 wrote ``order_date = 2023``, ``store_id = 'Berlin'``, ``order_date
    = 'cancelled'``, and each was repaired twice). A number column against a number; a text
    column against its string rule (``texts``: its known values, the question's strings, or no
    string at all: ``None``); a date or timestamp column against a date (in a year the
    question names), or its year through ``year(col)`` (the dialect's form) against a year;
    a boolean column against TRUE/FALSE. Literal rules the question gave no value for leave
    their comparisons out. With the question's words (``asked``), a number or date compares
    only in a column they name, when they name one (:func:`_linked`); with the periods it
    names (``spans``), a date column only within them."""
    by_family: dict[str, list[tuple[str, Column]]] = {"number": [], "temporal": [],
                                                      "boolean": []}
    by_values: dict[str, list[str]] = {}  # a text column's string rule -> the columns
    out: dict[str, str] = {}
    for table in group:
        for c in infos[table].columns:
            if not usable(c.name):
                continue
            ref = _ref(table, c.name, group, infos, shown, name_of)
            if c.family in by_family:
                by_family[c.family].append((ref, c))
            elif c.family == "text":
                values = texts.get((table, c.name), "string" if "string" in rules else None)
                if values is not None:
                    by_values.setdefault(values, []).append(ref)
    preds: list[str] = []
    numbers, dates = _linked(by_family["number"], asked), _linked(by_family["temporal"], asked)
    bools = [ref for ref, _ in by_family["boolean"]]
    if numbers and "number" in rules:
        out[f"ncol{suffix}"] = " | ".join(numbers)
        n = f"ncol{suffix}"
        preds.append(f'{n} ((" + " | " - " | " * " | " / ") {n})? ntail')
    if dates and spans:
        # the periods the question names, over one date column each (:mod:`.periods`)
        preds.extend(span.condition(f"({ref})") for ref in dates for span in spans)
    elif dates:
        out[f"dcol{suffix}"] = " | ".join(dates)
        d = f"dcol{suffix}"
        if "dval" in rules:
            lhs = d
            if "date_trunc" in allowed_names(dialect) and dialect != "sqlite":
                lhs = f'({d} | "date_trunc(" part-str ", " {d} ")")'
            preds.append(f"{lhs} dtail")
        if "year" in rules:
            names = allowed_names(dialect)
            for form, fn, quoted in _YEAR_FORMS.get(dialect, _YEAR_FORMS["duckdb"]):
                if fn in names:
                    preds.append(f"{form.replace('D', d)} {'qytail' if quoted else 'ytail'}")
    if bools:
        out[f"bcol{suffix}"] = " | ".join(bools)
        preds.append(f'bcol{suffix} ((" = " | " <> ") ({_BOOL}) | " IS " ("NOT ")? ({_BOOL}))?')
    lower = "lower" in allowed_names(dialect)
    for k, (values, refs) in enumerate(by_values.items(), start=1):
        t = f"t{k}col{suffix}"
        out[t] = " | ".join(refs)
        lhs = f'({t} | "lower(" {t} ")")' if lower else t
        like = ' | (" NOT")? " LIKE " S' + (' | (" NOT")? " ILIKE " S'
                                            if dialect in _ILIKE else "")
        rules[f"tail-{values}"] = (
            f'eq S | (" NOT")? " IN (" S (", " S){{0,{MAX_LIST - 1}}} ")"{like}'
            .replace("S", values))
        preds.append(f"{lhs} tail-{values}")
    out[f"typed{suffix}"] = " | ".join(f"({p})" for p in preds) if preds else '"FALSE"'
    return out


def _typed_shared(rules: dict[str, str], question: str | None) -> None:
    """The typed comparisons' shared tails (``ntail``, ``dtail``, ``ytail``), over the literal
    rules there are (with a question: only its values)."""
    rules["eq"] = _EQ
    if "number" in rules:
        rules["ntail"] = (f'cmp number | (" NOT")? " BETWEEN " number " AND " number'
                          f' | (" NOT")? " IN (" number (", " number){{0,{MAX_LIST - 1}}} ")"')
    lit = rules.get("lit", "")
    dvals = [v for v in ("date", '"CURRENT_DATE"') if v in _TOKEN.findall(lit)
             or (question is None and v == "date")]
    if question is None:
        dvals.append('"CURRENT_DATE"')
    if dvals:
        rules["dval"] = " | ".join(dvals)
        rules["dtail"] = 'cmp dval | (" NOT")? " BETWEEN " dval " AND " dval'
    years = sorted(set(_YEAR.findall(question))) if question is not None else None
    if years is None or years:
        rules["year"] = alternatives(years) if years else "[12] [0-9] [0-9] [0-9]"
        rules["ytail"] = ('cmp year | (" NOT")? " BETWEEN " year " AND " year'
                          f' | (" NOT")? " IN (" year (", " year){{0,{MAX_LIST - 1}}} ")"')
        rules["qytail"] = "eq \"'\" year \"'\""


def _text_values(infos: Iterable[TableInfo], question: str | None, rules: dict[str, str]
                 ) -> tuple[dict[tuple[str, str], str | None], dict[str, str]]:
    """Each text column's string rule: a column whose snapshot holds all its values
    (:func:`.compact_schema.all_values_known`) compares only with them (with a question:
    those it names; none named, no string); another column with ``string`` (the question's
    strings). With a question, a string some column's samples hold is that column's (and
    any other's whose samples hold it: "the Corporate segment": ``segment``, "in Berlin":
    ``city``, not ``name`` or ``country``); the columns whose values are not all known also
    take the question's strings that no sample holds (``free-string``)."""
    texts: dict[tuple[str, str], str | None] = {}
    extra: dict[str, str] = {}
    lower = question.lower() if question is not None else None
    infos = list(infos)

    def rule_for(values: list[str]) -> str:
        name = f"sv{len(extra) + 1}"
        extra[name] = alternatives(_sql_string(v) for v in values)
        return name

    sampled: dict[tuple[str, str], list[str]] = {}
    open_columns: list[tuple[str, str]] = []
    for info in infos:
        for c in info.columns:
            if c.family != "text" or not usable(c.name):
                continue
            values = [str(v) for v in c.samples if isinstance(v, str) and 0 < len(v) <= MAX_STRING]
            known = bool(values) and all_values_known(c, info)
            if lower is not None:
                values = [v for v in values if v.lower() in lower]
            if not known:
                open_columns.append((info.name, c.name))
                sampled[(info.name, c.name)] = values
                continue
            texts[(info.name, c.name)] = rule_for(values) if values else None
    if question is None:
        return texts, extra
    said = question.lower()
    claimed = {v.lower() for info in infos for c in info.columns for v in c.samples
               if isinstance(v, str) and v.lower() in said}
    free = sorted(v for v in _question_strings(question, infos) if v.lower() not in claimed)
    for key in open_columns:
        values = list(dict.fromkeys([*sampled[key], *free]))
        texts[key] = rule_for(values) if values else None
    return texts, extra


def _choose(snapshot: SchemaSnapshot, tables: Iterable[str] | None) -> list[TableInfo]:
    chosen = [snapshot.tables[n] for n in dict.fromkeys(tables or ()) if n in snapshot.tables]
    infos = chosen or list(snapshot.tables.values())
    return [t for t in infos if usable(t.name) and any(usable(c.name) for c in t.columns)]


_NUMBER = re.compile(r"(?<![\w.])(\d{1,7}(?:\.\d{1,4})?)(\s*%)?(?![\w.])")
_YEAR = re.compile(r"\b(1[89]\d\d|2\d\d\d)\b")


_PHRASE = re.compile(r"[A-Z][\w&-]*(?:\s+[A-Z][\w&-]*)*")
_RECENT = re.compile(r"\b(last|past|recent|today|ago|this)\b", re.I)
_MISSING = re.compile(r"\b(without|missing|no|not|null|empty|unknown)\b", re.I)
_ALL = re.compile(r"\b(all|everything|details?|full)\b", re.I)
_RATIO = re.compile(r"\b(ratio|share|percent|percentage|proportion|rate|fraction|per cent)\b|%",
                    re.I)


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _question_strings(question: str, infos: Iterable[TableInfo]) -> set[str]:
    """The strings ``question`` gives: known values (samples) it names, and its capitalised
    phrases (``Germany``, ``Berlin Mitte``)."""
    lower = question.lower()
    strings = {str(v) for info in infos for c in info.columns for v in c.samples
               if isinstance(v, str) and 0 < len(v) <= MAX_STRING and v.lower() in lower}
    strings.update(m.group(0) for m in _PHRASE.finditer(question)
                   if m.start() > 0 and len(m.group(0)) <= MAX_STRING)
    return strings


def question_literals(question: str, infos: Iterable[TableInfo] = ()) -> dict[str, str]:
    """The literal rules for one question: only values the person gave. Numbers as written
    (a percentage also as a fraction), dates in the years named, strings that are a known
    value of a text column (a sample) named in the question, or a capitalised phrase of it
    (``Germany``, ``Berlin Mitte``), and CURRENT_DATE only for "last/recent/this ...".
    Unprompted, SmolLM2 added ``WHERE id = 1``, ``= id`` or ``= '+(SELECT ...'`` to nearly
    every query (issue 13): a filter on a value nobody gave cannot be right. Rules with no
    alternative are left out (``lit`` holds what is left)."""
    numbers: list[str] = []
    counted = top_count(question)  # "top 5": the LIMIT's, not a value to filter on
    skip = counted[1] if counted else None
    infos = list(infos)
    dated = any(c.family == "temporal" for info in infos for c in info.columns)
    for value, percent in _NUMBER.findall(question):
        if value == skip and not percent:
            skip = None
            continue
        if dated and not percent and _YEAR.fullmatch(value):
            continue  # a year, where there are dates: compared through the date rules
        numbers.append(value)
        if percent:
            numbers.append(f"{float(value) / 100:g}")
    years = sorted(set(_YEAR.findall(question)))
    strings = _question_strings(question, infos)
    rules: dict[str, str] = {}
    if numbers:
        rules["number"] = alternatives(numbers)
    if strings:
        rules["string"] = alternatives(_sql_string(v) for v in strings)
    if years:
        rules["date"] = f"\"DATE '\" ({alternatives(years)}) \"-\" month-day \"'\""
    kinds: list[str] = [k for k in ("number", "string", "date") if k in rules]
    if _RECENT.search(question):
        kinds.append('"CURRENT_DATE"')
    if kinds:
        rules["lit"] = " | ".join(kinds)
    return rules


def _shaped(family: dict[str, str], rules: dict[str, str], shape: Sketch,
            question: str) -> None:
    """Narrow the per-branch rules to the shape ``question`` asks for (:mod:`.sketch`):
    the select list (rows; aggregates only; grouped), the ranking (``ORDER BY`` in the
    direction asked, ``LIMIT`` the count asked, and no other LIMIT), a WHERE that must be
    there when the question gives a value and may compare only with it (``IS NULL`` and
    ``NOT`` only when it says "no"/"not"/"missing", ``OR`` only when it says "or", no more
    comparisons than values), and no CASE or CAST in a select list. SmolLM2-135M, with the
    whole grammar, answered 0 of 20 grouped demo questions and filtered on ``IS NULL``
    where the question named a value."""
    missing = bool(_MISSING.search(question))
    values = sum(len(_split_top(rules[k])) for k in ("number", "string") if k in rules)
    values += len(set(_YEAR.findall(question))) + bool(_RECENT.search(question))
    # as many aggregates as the question names, each bare (SmolLM2: "abs(count(*)) || ..."),
    # unless it asks for a ratio; one grouping key
    extra = max(0, len(shape.aggregates) - 1)
    family["alist"] = f'aitem (", " aitem){{0,{extra}}}'
    grouped = 'pgroup ", " alist gclauses'
    if shape.grouped or (shape.top is not None and shape.aggregates):
        bodies = [grouped]
    elif shape.top is not None:  # "3 cheapest products": rows, ranked
        bodies = ["plist pclauses"]
    elif shape.aggregates:
        bodies = ["alist aclauses"]
    else:  # no word asks for a summary: rows
        bodies = ['"*" pclauses', "plist pclauses"] if _ALL.search(question) else [
            "plist pclauses"]
    family["body"] = " | ".join(bodies)
    family["alead"] = "agg"
    if not _RATIO.search(question):
        family["aitem"] = 'agg (" AS " alias)?'
        family["goitem"] = "agg dir?"
    family["pgroup"] = "col | pfun"
    family["plist"] = "pcols"  # a row's columns (SmolLM2: "upper(name)", "abs(category_id)")
    family["porder"] = '" ORDER BY " poitem'
    family["gorder"] = '" ORDER BY " goitem'
    family["plead"] = "col | pcall"
    family["pfun"] = 'pcall (" AS " alias)?'
    family["patom"] = 'col | lit | pcall | "(" pcond ")"'
    family["ppred"] = 'typed | col " IS " ("NOT ")? "NULL"' if missing else "typed"
    family["pneg"] = '"NOT " ppred | ppred' if missing else "ppred"
    family["pconj"] = f'pneg (" AND " pneg){{0,{max(0, values - 1)}}}'
    family["pcond"] = 'pconj (" OR " pconj){0,1}' if shape.either else "pconj"
    where = " where" if "lit" in rules else " where?" if missing else ""
    having = " having?" if "number" in rules else ""
    if shape.top is not None:
        rules["limit"] = gbnf_literal(f" LIMIT {shape.top}")
        if shape.descending is not None:
            rules["dir"] = '" DESC"' if shape.descending else '" ASC"'
        family["poitem"] = "plead dir"
        family["goitem"] = family["goitem"].replace("dir?", "dir")
        order_p, order_g, limit = " porder", " gorder", " limit"
    elif shape.grouped:
        # a breakdown reads biggest first, a time series in time order
        if set(shape.per) & set(_PARTS):
            family["gorder"] = '" ORDER BY 1"'  # the key, whichever was chosen
        else:
            family["goitem"] = 'agg " DESC"'
        order_p, order_g, limit = " porder?", " gorder", ""
    else:
        order_p, order_g, limit = " porder?", " gorder?", ""
    family["pclauses"] = f'" FROM " from{where}{order_p}{limit}'
    family["aclauses"] = f'" FROM " from{where}'
    family["gclauses"] = f'" FROM " from{where} group{having}{order_g}{limit}'


def _needed(infos: dict[str, TableInfo], texts: dict[tuple[str, str], str | None],
            shape: Sketch, asked: set[str]) -> set[str]:
    """The tables a question needs read: the one whose rows it counts, those it names, those
    with a column it names (no key), with a known value it gives, or with a key "per" names."""
    per = set(shape.per)
    needed = set()
    for name, info in infos.items():
        table_words = words(name)
        if names_table(shape.counted, name) or (table_words and table_words <= asked) or (
                per and table_words <= per):
            needed.add(name)
        for c in info.columns:
            if not is_key(c) and words(c.name) & (asked | per):
                needed.add(name)
            if c.family == "text" and texts.get((name, c.name)) and all_values_known(c, info):
                needed.add(name)
    return needed


def _group_keys(group: tuple[str, ...], infos: dict[str, TableInfo],
                dates: list[tuple[str, Column]], every: list[tuple[str, Column]],
                shape: Sketch, dialect: str, shown: Any, name_of: Any) -> list[str]:
    """The grouping keys "per X" names: a column named X ("by country"), the label of a
    table named X ("per category": ``categories.name``), or a date's part ("per month",
    "monthly": ``month(order_date)``); [] when it names none (any column or call)."""
    per = set(shape.per)
    if not per:
        return []
    keys = [ref for ref, c in every if words(c.name) & per and not is_key(c)]
    for table in group:
        label = label_column(infos[table])
        if words(table) & per and label is not None and usable(label.name):
            keys.append(_ref(table, label.name, group, infos, shown, name_of))
    parts = [p for p in _PARTS if p in per]
    names = allowed_names(dialect)
    for part in parts:
        for ref, _ in dates:
            if dialect == "duckdb" and part in ("year", "month") and part in names:
                keys.append(f'"{part}(" {ref} ")"')
            elif "date_trunc" in names and dialect != "sqlite":
                keys.append(f'"date_trunc(\'{part}\', " {ref} ")"')
    return list(dict.fromkeys(keys))


def _typed_calls(group: tuple[str, ...], infos: dict[str, TableInfo], rules: dict[str, str],
                 dialect: str, shown: Any, name_of: Any, suffix: str,
                 shape: Sketch, asked: set[str] | None) -> dict[str, str]:
    """A branch's aggregates and calls typed by their columns (``agg``, ``pcall``): sum and
    avg over number columns, lower/upper/length over text, year/month/date_trunc over dates,
    and only the aggregates the question names (:class:`.sketch.Sketch`), ``count(DISTINCT
    col)`` when it says "different"/"distinct". SmolLM2 wrote ``sum(categories.name * ...)``
    and ``abs(name)``, refused by the database (5 of 9 invalid replies on the demo)."""
    found: dict[str, list[tuple[str, Column]]] = {"number": [], "text": [], "temporal": []}
    every: list[tuple[str, Column]] = []
    for table in group:
        for c in infos[table].columns:
            if usable(c.name):
                ref = _ref(table, c.name, group, infos, shown, name_of)
                every.append((ref, c))
                if c.family in found:
                    found[c.family].append((ref, c))
    out: dict[str, str] = {}
    kinds = {"number": "num", "text": "txt", "temporal": "tim"}
    for family, pairs in found.items():
        if pairs:
            out[f"{kinds[family]}{suffix}"] = " | ".join(ref for ref, _ in pairs)
    num, txt, tim = (f"{kinds[f]}{suffix}" if found[f] else None for f in kinds)
    # an aggregate's column: one the question names, when it names one ("average discount")
    if found["number"]:
        out[f"anum{suffix}"] = " | ".join(_linked(found["number"], asked))
    out[f"acol{suffix}"] = " | ".join(_linked(found["number"] + found["temporal"], asked)
                                      if found["number"] or found["temporal"] else
                                      [ref for ref, _ in every])
    # "how many countries": the distinct values of the column "country" (not a table's rows)
    counted = [ref for ref, c in every if shape.counted and shape.counted in words(c.name)
               and shape.counted not in {w for t in group for w in words(t)}]
    distinct = (counted or [ref for ref, c in every if words(c.name) & (asked or set())]
                or [ref for ref, _ in every])
    out[f"dcount{suffix}"] = " | ".join(distinct)
    forms: dict[str, list[str]] = {
        "count": [f'"count(DISTINCT " dcount{suffix} ")"'] if shape.distinct or counted else
                 ['"count(*)"'],
        "min": [f'"min(" acol{suffix} ")"'], "max": [f'"max(" acol{suffix} ")"']}
    if num:
        arith = f'anum{suffix} ((" + " | " - " | " * ") anum{suffix}){{0,2}}'
        forms["sum"] = [f'"sum(" {arith} ")"']
        forms["avg"] = [f'"avg(" {arith} ")"']
    wanted = [f for name in AGGREGATES if name in shape.aggregates for f in forms.get(name, ())]
    out[f"agg{suffix}"] = " | ".join(wanted or [f for name in AGGREGATES
                                                for f in forms.get(name, ())])
    keys = _group_keys(group, infos, found["temporal"], every, shape, dialect, shown, name_of)
    if keys:
        out[f"pgroup{suffix}"] = " | ".join(keys)
    names = allowed_names(dialect)
    known = dialect if dialect in _DATES else "duckdb"
    typed = [(fn, args, num) for fn, args in _SCALAR if fn in _NUMERIC_ONLY]
    typed += [(fn, args, txt) for fn, args in _SCALAR if fn in ("lower", "upper", "length")]
    typed += [(fn, args, tim) for fn, args in _DATES[known]]
    calls = [f'"{fn}(" {args.replace("E", ref)} ")"' for fn, args, ref in typed
             if ref is not None and fn in names
             and ("string" in rules or "string" not in _TOKEN.findall(args))]
    if calls:
        out[f"pcall{suffix}"] = " | ".join(calls)
    return out


def sql_grammar(snapshot: SchemaSnapshot, tables: Iterable[str] | None = None,
                question: str | None = None) -> str:
    """The GBNF grammar of one SELECT over ``tables`` of ``snapshot`` (default: all of them;
    unknown names are skipped, so a pick that names none gives every table), at most
    ``MAX_TABLES`` of them (the first given) in at most ``MAX_BRANCHES`` table sets. With
    ``question``, numbers and dates are only those it names (:func:`question_literals`).

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
    family = dict(_FAMILY)
    shape: Sketch | None = None
    asked = words(question) if question is not None else None
    if question is not None:
        for name in ("number", "date", "string", "lit"):
            del rules[name]
        rules.update(question_literals(question, infos))
        # no value to filter on: no WHERE (SmolLM2 then wrote "WHERE id IS NULL"); one given:
        # a WHERE on it; and the select list of the shape asked for
        shape = sketch(question)
        if (shape.top is not None and not shape.aggregates
                and any(names_table(shape.counted, t.name) for t in infos)):
            shape = replace(shape, aggregates=frozenset({"count"}))  # "the most orders"
        _shaped(family, rules, shape, question)
    cols = {}
    for n, info in enumerate(infos, start=1):
        names = [column(c.name) for c in info.columns if usable(c.name)]
        rules[f"cols-{n}"] = alternatives(names)
        cols[info.name] = (f"cols-{n}", set(names))
    family["pcall"] = " | ".join(_calls(dialect, "pargs"))
    family["acall"] = " | ".join(_calls(dialect, "aargs"))
    family["group"] = ('" GROUP BY ALL"' if dialect in _GROUP_ALL
                       else f'" GROUP BY " pexpr (", " pexpr){{0,{MAX_AGGS}}}')
    rules["part-str"] = alternatives(f"'{p}'" for p in _PARTS)
    rules["ctype"] = alternatives(_TYPES.get(dialect, _TYPES["duckdb"]))
    rules.update(word_except("alias", BAD_ALIASES))
    if "lit" not in rules:
        family["pargs"] = "col (binop col){0,2}"
    if "number" not in rules:
        family["aargs"] = "agg (binop agg){0,2}"
    _drop_missing(rules, family)
    _typed_shared(rules, question)
    texts, values = _text_values(infos, question, rules)
    rules.update(values)
    groups = list(enumerate(table_sets(list(by_name), edges, MAX_BRANCHES), start=1))
    spans = periods(question) if question is not None else None
    typed = {n: _typed(group, by_name, rules, texts, dialect, shown, column, f"-b{n}", asked,
                       spans) for n, group in groups}
    if "where" in family["pclauses"].replace("where?", ""):
        # a WHERE the question's values must fill: only the table sets with a column for one
        # (SmolLM2 otherwise read "customers in Germany" from regions: "WHERE FALSE")
        groups = [(n, g) for n, g in groups if typed[n][f"typed-b{n}"] != '"FALSE"'] or groups
    calls = {n: _typed_calls(group, by_name, rules, dialect, shown, column, f"-b{n}", shape,
                             asked) for n, group in groups} if shape is not None else {}
    if shape is not None and shape.grouped:
        # "per region": only the table sets with a key it names
        groups = [(n, g) for n, g in groups if f"pgroup-b{n}" in calls[n]] or groups
    if shape is not None and asked is not None:
        # the fewest tables that hold all the question needs: "How many orders have been
        # placed in total?" reads orders alone (SmolLM2 joined order_items and counted lines)
        needed = _needed(by_name, texts, shape, asked)
        holding = [(n, g) for n, g in groups if needed <= set(g)]
        fewest = min((len(g) for _, g in holding), default=0)
        groups = [(n, g) for n, g in holding if len(g) == fewest] or groups
    branches = []
    for n, group in groups:
        suffix = f"-b{n}"
        for name, body in family.items():
            rules[name + suffix] = _renamed(body, suffix)
        rules["from" + suffix] = alternatives(from_clauses(group, edges, shown, column))
        rules["col" + suffix] = _columns(group, cols, shown)
        rules.update(_select_columns(group, by_name, shown, column, suffix, asked,
                                     shape is not None and shape.top is not None))
        rules.update(typed[n])
        rules.update(calls.get(n, {}))
        branches.append("body" + suffix)
    distinct = ('("DISTINCT ")? ' if shape is None or (shape.distinct and not shape.aggregates)
                else "")
    rules["query"] = f'"SELECT " {distinct}({" | ".join(branches)})'
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


def _picked(group: tuple[str, ...], infos: dict[str, TableInfo], asked: set[str] | None,
            ranked: bool = False) -> set[tuple[str, str]]:
    """(table, column) of a branch that a question's select list may name: the columns its
    words name, each table's label, and for a ranking ("3 cheapest products") the measures
    it may be ranked by; empty (any column) without a question."""
    if asked is None:
        return set()
    picked = {(t, c.name) for t in group for c in infos[t].columns
              if usable(c.name) and (words(c.name) & asked or (
                  ranked and c.family == "number" and not is_key(c)))}
    for table in group:
        label = label_column(infos[table])
        if label is not None and usable(label.name):
            picked.add((table, label.name))
    return picked


def _select_columns(group: tuple[str, ...], infos: dict[str, TableInfo], shown: Any,
                    column: Any, suffix: str, asked: set[str] | None = None,
                    ranked: bool = False) -> dict[str, str]:
    """``pcols<suffix>``: a list of the branch's columns, each at most once and in the
    schema's order (tables in the branch's order), at most ``MAX_PLAIN`` of them; no aliases (a
    plain column is named by itself). ``pa<i>-<n>`` is "up to n more columns after slot i":
    take slot i+1 (then up to n-1 more) or skip it; columns x MAX_PLAIN rules at most.

    With the question's words (``asked``), only the columns it names and each table's label
    (:func:`.compact_schema.label_column`): "List the customers who live in Tokyo" is their
    names, not the first four columns (SmolLM2's choice)."""
    picked = _picked(group, infos, asked, ranked)
    seen: dict[str, int] = {}
    for table in group:
        for c in infos[table].columns:
            if usable(c.name):
                seen[c.name] = seen.get(c.name, 0) + 1
    slots = []
    for table in group:
        prefix = gbnf_literal(shown(table) + ".")
        for c in infos[table].columns:
            if not usable(c.name) or (picked and (table, c.name) not in picked):
                continue
            name = gbnf_literal(column(c.name))
            # qualified, or bare where no other table of the branch has the name
            ref = f"({prefix})? {name}" if seen[c.name] == 1 else f"{prefix} {name}"
            slots.append(ref)
    if len(slots) > MAX_SLOTS:
        return {f"pcols{suffix}": f'col{suffix} (", " col{suffix}){{0,{MAX_PLAIN - 1}}}',
                f"pkeys{suffix}": f'col{suffix} (", " col{suffix}){{0,{MAX_KEYS - 1}}}'}
    rules = {f"ps{i}{suffix}": slot for i, slot in enumerate(slots)}

    def after(i: int, n: int) -> str:
        """Rule name of "up to n more columns, each after slot i" (made on first use)."""
        name = f"pa{i}-{n}{suffix}"
        if name not in rules:
            take = f'", " ps{i + 1}{suffix}'
            if n > 1 and i + 2 < len(slots):
                take += " " + after(i + 1, n - 1)
            skip = f" | {after(i + 1, n)}" if i + 2 < len(slots) else ""
            rules[name] = f"({take}{skip})?"
        return name

    for name, most in (("pcols", MAX_PLAIN), ("pkeys", MAX_KEYS)):
        rules[f"{name}{suffix}"] = " | ".join(
            f"ps{i}{suffix}" + (f" {after(i, most - 1)}" if i + 1 < len(slots) else "")
            for i in range(len(slots)))
    return rules


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

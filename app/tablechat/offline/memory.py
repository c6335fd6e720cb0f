"""The offline engine's memory: a question the engine cannot answer by itself, but that says
what a verified example says with other values, is answered from that example's SQL (issue 14).

The values substituted are checked against the data first: a string value must be one the
compared column holds (its spelling taken from the data), so a city never lands where the
example compared an airport code. The SQL then goes through the guard like any other.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from sqlglot import exp, parse_one
from sqlglot.errors import SqlglotError

from ..errors import TableChatError
from ..memory.bm25 import terms
from ..sql.database import Database
from ..sql.schema import SchemaSnapshot
from ..store.base import StoreError
from .intent import Intent

if TYPE_CHECKING:
    from ..memory import Match, MemoryLike
    from .engine import Plan

log = logging.getLogger(__name__)


def recall(memory: MemoryLike, db: Database, question: str, snapshot: SchemaSnapshot,
           history: Any = None) -> Plan | None:
    """A plan answering ``question`` from a verified example, or None."""
    from .engine import Plan

    if history:  # a follow-up leans on the conversation, which an example does not know
        return None
    try:
        match = memory.match(question, snapshot.dialect, vocabulary(snapshot))
    except StoreError as exc:  # memory is a help: a store that is down must not fail answers
        log.warning("memory unavailable: %s", exc)
        return None
    if match is None:
        return None
    sql = _fit_values(match, db, snapshot.dialect)
    if sql is None:
        return None
    described = match.describe()
    return Plan(question, "answer", sql, match.score, [described], [],
                Intent(confidence=match.score, understood=[described]))


_vocabularies: dict[int, tuple[SchemaSnapshot, frozenset[str]]] = {}


def vocabulary(snapshot: SchemaSnapshot) -> frozenset[str]:
    """The words of the schema's table and column names, as the memory's terms (cached per
    snapshot)."""
    cached = _vocabularies.get(id(snapshot))
    if cached is not None and cached[0] is snapshot:
        return cached[1]
    names = []
    for table in snapshot.tables.values():
        names.append(table.name)
        names.extend(c.name for c in table.columns)
    spaced = " ".join(re.sub(r"([a-z])([A-Z])", r"\1 \2", n).replace("_", " ") for n in names)
    words = frozenset(terms(spaced))
    if len(_vocabularies) > 64:
        _vocabularies.clear()
    _vocabularies[id(snapshot)] = (snapshot, words)
    return words


def _fit_values(match: Match, db: Database, dialect: str) -> str | None:
    """The match's SQL with each substituted string spelled as the data spells it, or None
    when the compared column holds no such value."""
    if not match.values:
        return match.sql
    new = {v.lower() for v in match.values.values()}
    try:
        tree = parse_one(match.sql, read=dialect)
    except SqlglotError:
        return None
    tables = {t.alias_or_name.lower(): t for t in tree.find_all(exp.Table)}
    for lit in list(tree.find_all(exp.Literal)):
        if not lit.is_string or str(lit.this).lower() not in new:
            continue
        found = _lookup(db, lit, tables, dialect)
        if found is None:
            return None
        lit.replace(exp.Literal.string(found))
    return tree.sql(dialect=dialect)


def _lookup(db: Database, lit: exp.Literal, tables: dict[str, exp.Table], dialect: str
            ) -> str | None:
    """The value of the column ``lit`` is compared with that equals it, ignoring case."""
    parent = lit.parent
    if not isinstance(parent, exp.EQ | exp.NEQ | exp.In | exp.Like | exp.ILike):
        return str(lit.this)  # not an equality with a column: nothing to check against
    column = next((c for c in parent.args.values() if isinstance(c, exp.Column)), None)
    if column is None:
        return str(lit.this)
    table = tables.get(column.table.lower()) if column.table else (
        next(iter(tables.values())) if len(tables) == 1 else None)
    if table is None:
        return None
    plain = exp.Table(this=table.this.copy(), db=table.args.get("db"))
    probe = (exp.select(exp.column(column.name, quoted=column.this.quoted)).from_(plain)
             .where(exp.func("lower", exp.column(column.name, quoted=column.this.quoted))
                    .eq(exp.Literal.string(str(lit.this).lower())))
             .limit(1))
    try:
        rows = db.execute(probe.sql(dialect=dialect), max_rows=1).rows
    except TableChatError as exc:
        log.debug("memory: value probe failed: %s", exc)
        return None
    return str(rows[0][0]) if rows and rows[0][0] is not None else None

"""The SQL guard: sqlglot policy applied before anything reaches the database.

Layers (DESIGN.md, docs/security.md): size bounds before parsing deep (``sql/limits.py``);
one statement; only queries; no write/command node anywhere (``sql/nodes.py``); tables must
exist; columns must resolve (a fast name check, ``qualify`` for whatever it cannot show); only
allow-listed functions, in every position (``sql/functions.py``); row cap; transpile to the
target dialect, repairing common SQLite/MySQL habits of LLMs. The database sandbox enforces
the same rules again (``sql/database.py``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import OptimizeError, ParseError, SqlglotError
from sqlglot.generator import Generator
from sqlglot.optimizer.qualify import qualify
from sqlglot.parser import Parser
from sqlglot.schema import MappingSchema
from sqlglot.tokens import Tokenizer

from ..errors import InvalidSQLError, UnsafeSQLError
from .bounds import check_value_bounds
from .functions import DENIED, FunctionPolicy
from .limits import SQLLimits, too_deep
from .nodes import FORBIDDEN_NODES
from .tables import TableNames

logging.getLogger("sqlglot").setLevel(logging.ERROR)

# Kept for callers and tests that name the deny-list; the policy is the allow-list in
# functions.py, and these are refused by it with a reason.
DENIED_FUNCTIONS = frozenset(DENIED)
# What the policy walk does with a node, decided once per node class (a dict lookup per node
# instead of a chain of isinstance checks against ~40 classes).
(_OTHER, _FORBIDDEN, _FUNC, _TABLE, _CTE, _COLUMN, _ALIAS, _TABLE_ALIAS, _SOURCE,
 _SELECT) = range(10)
_KINDS: dict[type, int] = {}


def _kind(cls: type) -> int:
    kind = _KINDS.get(cls)
    if kind is None:
        kind = _OTHER
        for base, value in (
            (FORBIDDEN_NODES, _FORBIDDEN),
            (exp.Func, _FUNC),
            (exp.Table, _TABLE),
            (exp.CTE, _CTE),
            (exp.Column, _COLUMN),
            (exp.Alias, _ALIAS),
            (exp.TableAlias, _TABLE_ALIAS),
            ((exp.From, exp.Join, exp.Lateral), _SOURCE),
            (exp.Select, _SELECT),
        ):
            if issubclass(cls, base):
                kind = value
                break
        _KINDS[cls] = kind
    return kind


# Dialects LLMs slip into, tried in order when the target dialect cannot parse a statement.
REPAIR_DIALECTS = ("sqlite", "mysql", "postgres")


@dataclass(frozen=True, slots=True)
class CheckedSQL:
    """A statement the guard accepted."""

    sql: str  # what to execute, in the target dialect
    original: str
    tables: frozenset[str]
    limit: int | None  # the effective row cap (an imposed cap runs as LIMIT cap + 1)
    repaired: bool = False  # parsed only after dialect repair
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(slots=True)
class _Refs:
    """What one walk of a statement found: the names it reads and the names it defines."""

    tables: list[exp.Table] = field(default_factory=list)
    ctes: set[str] = field(default_factory=set)
    columns: list[exp.Column] = field(default_factory=list)
    names: set[str] = field(default_factory=set)  # select aliases, CTE/derived column lists
    aliases: set[str] = field(default_factory=set)  # table aliases (CTEs, subqueries, tables)


class _Codec(threading.local):
    """One dialect's tokenizer, parser and generator, built once per thread and reused (each
    resets itself per call; building them costs about as much as parsing a short query)."""

    def __init__(self, dialect: Dialect) -> None:
        self.tokenizer: Tokenizer = dialect.tokenizer()
        self.parser: Parser = dialect.parser()
        self.generator: Generator = dialect.generator()

    def parse(self, sql: str, limits: SQLLimits | None = None) -> list[exp.Expr | None]:
        tokens = self.tokenizer.tokenize(sql)
        if limits is not None:  # bounded before the recursive parser sees them
            limits.check_tokens(tokens, sql)
        return self.parser.parse(tokens, sql)

    def generate(self, tree: exp.Expr) -> str:
        return self.generator.generate(tree, copy=False)


def _one_line(exc: Exception) -> str:
    """An exception's message on one line (refusals are one-line reasons)."""
    return " ".join(str(exc).split())


def _error_position(error: ParseError) -> tuple[int | None, int | None]:
    errors = getattr(error, "errors", None) or []
    if errors:
        return errors[0].get("line"), errors[0].get("col")
    return None, None


class SQLGuard:
    """Checks and rewrites SQL for one database.

    ``schema`` maps table name → column name → type (as sqlglot's ``MappingSchema`` takes it).
    """

    def __init__(
        self,
        schema: Mapping[str, Mapping[str, str]],
        *,
        dialect: str = "duckdb",
        max_rows: int | None = 1000,
        allowed_qualifiers: Iterable[str] = ("main", "memory", "public"),
        limits: SQLLimits | None = None,
    ) -> None:
        self.dialect = dialect
        self.limits = limits or SQLLimits()
        self._functions = FunctionPolicy(dialect, self.limits.max_series_rows)
        self.max_rows = max_rows
        self.schema = {t: dict(cols) for t, cols in schema.items()}
        self._columns = {t.lower(): frozenset(c.lower() for c in cols)
                         for t, cols in self.schema.items()}
        # dialect objects built once: sqlglot looks a dialect name up on every call otherwise
        self._dialect = Dialect.get_or_raise(dialect)
        self._codec = _Codec(self._dialect)
        self._repair = tuple(Dialect.get_or_raise(d) for d in REPAIR_DIALECTS if d != dialect)
        # built once: qualify() would otherwise copy and normalize the schema on every call
        self._mapping = MappingSchema(dict(self.schema), dialect=dialect)
        # which tables and schemas a query may name (sql/tables.py)
        self._names = TableNames(self.schema, allowed_qualifiers)

    # -- public -------------------------------------------------------------------------------
    def check(self, sql: str, *, max_rows: int | None = -1) -> CheckedSQL:
        """Validate ``sql``; return what to execute or raise Unsafe/InvalidSQLError."""
        cap = self.max_rows if max_rows == -1 else max_rows
        self.limits.check_text(sql or "")
        text = (sql or "").strip()
        if not text:
            raise InvalidSQLError("empty SQL statement", sql=sql)
        try:
            return self._check(text, cap)
        except RecursionError:
            # the bounds above keep sqlglot's recursion well inside Python's limit; this is the
            # last line for shapes they do not count (NOT NOT NOT …): a clear refusal, never an
            # internal error with a thousand-frame traceback in the log
            raise too_deep(self.limits.max_depth, text) from None

    def _check(self, text: str, cap: int | None) -> CheckedSQL:
        tree, repaired = self._parse(text)
        refs = self._check_policy(tree, text)
        # values one call builds (repeat, lpad, ...): neither the timeout nor memory_limit
        # stops them inside DuckDB (issue 11, class 3)
        check_value_bounds(tree, max_cell_bytes=self.limits.max_cell_bytes)
        tables = frozenset(self._names.canonical(t) for t in refs.tables if t.name)
        limited = self._apply_limit(tree, cap)
        # generate what runs first: a column check by qualify rewrites the tree in place
        out = self._codec.generate(tree)
        self._reads_back(out, text)
        if self._columns_resolve(refs):
            return CheckedSQL(out, text, tables, limited, repaired)
        out, notes = self._validate(tree, out, text)
        return CheckedSQL(out, text, tables, limited, repaired, tuple(notes))

    def _reads_back(self, out: str, text: str) -> None:
        """What runs must be what was checked: SQL that sqlglot writes but cannot read back
        (``SUBSTR(a AND b, 0, 0)`` became an unparsable ``SUBSTRING(...)``: found by the fuzz
        test) is refused rather than handed to a parser that may read it otherwise."""
        try:
            back = [s for s in self._codec.parse(out) if s is not None]
        except (SqlglotError, TypeError, ValueError, AttributeError, IndexError, KeyError):
            back = []
        if len(back) != 1:
            raise InvalidSQLError("the query could not be written back in this SQL dialect; "
                                  "write it another way", sql=text)

    # -- layers -------------------------------------------------------------------------------
    def _parse(self, text: str) -> tuple[exp.Expr, bool]:
        first_error: ParseError | None = None
        parsers: tuple[_Codec | Dialect, ...] = (self._codec, *self._repair)
        for i, dialect in enumerate(parsers):
            try:
                parsed = self._codec.parse(text, self.limits) if i == 0 else dialect.parse(text)
                statements = [s for s in parsed if s is not None]
            except ParseError as exc:
                first_error = first_error or exc
                continue
            except SqlglotError as exc:  # tokenizer errors and the like
                # one line: sqlglot's tokenizer error quotes the SQL, newlines and all
                raise InvalidSQLError(f"cannot parse SQL: {_one_line(exc)}", sql=text) from exc
            except (TypeError, ValueError, AttributeError, IndexError, KeyError):
                # sqlglot's compiled parser fails this way on some malformed input (the fuzz
                # test: '0?SELECT …' in a repair dialect): unparsable, never an internal error
                if i == 0:
                    raise InvalidSQLError("cannot parse SQL", sql=text) from None
                continue
            if len(statements) != 1:
                raise UnsafeSQLError(
                    f"exactly one statement is allowed, found {len(statements)}", sql=text
                )
            return statements[0], i > 0
        assert first_error is not None
        line, col = _error_position(first_error)
        message = str(first_error).splitlines()[0]
        raise InvalidSQLError(f"cannot parse SQL: {message}", sql=text, line=line, col=col)

    def _check_policy(self, tree: exp.Expr, text: str) -> _Refs:
        """Layers 2-4 in one walk of the tree; returns the names it reads and defines."""
        if isinstance(tree, exp.Block):
            raise UnsafeSQLError("exactly one statement is allowed", sql=text)
        if not isinstance(tree, exp.Query):
            raise UnsafeSQLError(
                f"only read-only queries (SELECT) are allowed, not {type(tree).__name__.upper()}",
                sql=text,
            )
        refs = _Refs()
        max_nodes, max_depth = self.limits.max_nodes, self.limits.max_depth
        functions = self._functions
        # one depth-first walk that also counts: the size bounds hold before qualify runs
        stack: list[tuple[exp.Expr, int]] = [(tree, 1)]
        count = 0
        while stack:
            node, depth = stack.pop()
            count += 1
            if count > max_nodes:
                raise UnsafeSQLError(
                    f"statement too large: more than {max_nodes:,} syntax nodes", sql=text
                )
            if depth > max_depth:
                raise too_deep(max_depth, text)
            stack.extend((child, depth + 1) for child in node.iter_expressions())
            kind = _KINDS.get(type(node))
            if kind is None:
                kind = _kind(type(node))
            if kind == _OTHER:
                continue
            if kind == _FORBIDDEN:
                raise UnsafeSQLError(
                    f"{type(node).__name__.upper()} is not allowed inside a query", sql=text
                )
            if kind == _FUNC:
                reason = functions.refusal(cast(exp.Func, node))
                if reason is not None:
                    raise UnsafeSQLError(reason, sql=text)
            elif kind in (_SOURCE, _TABLE):
                # a call where a table goes (FROM, JOIN, LATERAL): only table functions
                target = node.this
                if isinstance(target, exp.Func):
                    reason = functions.refusal(target, table=True)
                    if reason is not None:
                        raise UnsafeSQLError(reason, sql=text)
                elif isinstance(node, exp.Lateral) and not isinstance(target, exp.Subquery):
                    # LATERAL name reads no checked table (found by tests/security fuzzing)
                    raise UnsafeSQLError("LATERAL takes a subquery or a table function",
                                         sql=text)
                if kind == _TABLE:
                    refs.tables.append(cast(exp.Table, node))
            elif kind == _SELECT:
                if not node.expressions:  # bare SELECT: sqlglot parses it, no database runs it
                    raise InvalidSQLError("SELECT needs at least one column", sql=text)
                if node.args.get("settings") or node.args.get("format"):
                    # ClickHouse: SETTINGS lifts the server's limits, FORMAT changes the reply
                    raise UnsafeSQLError("SETTINGS and FORMAT clauses are not allowed",
                                         sql=text)
            elif kind == _COLUMN:
                refs.columns.append(cast(exp.Column, node))
            elif kind == _ALIAS:
                refs.names.add(node.alias.lower())
            elif kind == _TABLE_ALIAS:
                refs.aliases.add(node.name.lower())
                refs.names.update(c.name.lower() for c in node.args.get("columns") or ())
            elif kind == _CTE:
                refs.ctes.add(node.alias_or_name.lower())
        for table in refs.tables:
            self._names.check(table, refs.ctes, text)
        return refs

    def _columns_resolve(self, refs: _Refs) -> bool:
        """The fast column check: True when every column reference names a column of a table
        the query reads (of that very table when qualified by its name or alias), or a name the
        query itself defines. False means "not shown", and ``qualify`` decides (and words the
        error). It never refuses a query by itself, and anything it lets through that does
        not bind is still refused by the database, whose error goes back to the model."""
        sources: dict[str, frozenset[str]] = {}
        known = set(refs.names)
        for table in refs.tables:
            name = self._names.key(table)
            if name in refs.ctes and not table.args.get("db"):
                continue
            columns = self._columns.get(name)
            if columns is not None:
                sources[table.alias_or_name.lower()] = columns
                known |= columns
        for column in refs.columns:
            qualifier = column.table.lower()
            if column.args.get("db") is not None:
                return False
            if isinstance(column.this, exp.Star):
                if qualifier and qualifier not in sources and qualifier not in refs.aliases:
                    return False
                continue
            name = column.name.lower()
            if not qualifier or qualifier not in sources:
                if name not in known or (qualifier and qualifier not in refs.aliases):
                    return False
            elif name not in sources[qualifier]:
                return False
        return True

    def _validate(self, tree: exp.Expr, out: str, text: str) -> tuple[str, list[str]]:
        """Check columns with ``qualify`` (in place on ``tree``, which is not used afterwards).

        A SQLite habit, ``WHERE name = "Alice"``, is repaired once: double-quoted names that
        are no column become text literals.
        """
        try:
            self._qualify(tree)
            return out, []
        except OptimizeError as exc:
            reparsed = self._dialect.parse(out)[0]
            fixed = None if reparsed is None else self._quoted_strings_to_literals(reparsed)
            if fixed is not None:
                fixed_out = self._dialect.generate(fixed)
                try:
                    self._qualify(fixed)
                    return fixed_out, ["double-quoted strings read as text literals"]
                except OptimizeError:
                    pass
            raise InvalidSQLError(f"invalid query: {_one_line(exc)}", sql=text) from exc
        except SqlglotError:
            # qualify cannot follow every construct; the database still validates it
            return out, ["column check skipped"]

    def _qualify(self, tree: exp.Expr) -> exp.Expr:
        self._names.flatten(tree)
        return qualify(
            tree,
            schema=self._mapping,
            dialect=self._dialect,
            validate_qualify_columns=True,
            quote_identifiers=False,
            identify=False,
        )

    def _quoted_strings_to_literals(self, tree: exp.Expr) -> exp.Expr | None:
        columns = {c.lower() for cols in self.schema.values() for c in cols}
        changed = False
        for column in list(tree.find_all(exp.Column)):
            ident = column.this
            if (
                isinstance(ident, exp.Identifier)
                and ident.quoted
                and not column.table
                and ident.name.lower() not in columns
            ):
                column.replace(exp.Literal.string(ident.name))
                changed = True
        return tree if changed else None

    @staticmethod
    def _apply_limit(tree: exp.Expr, cap: int | None) -> int | None:
        if cap is None or not isinstance(tree, exp.Query):
            return None
        limit = tree.args.get("limit")
        current: int | None = None
        if isinstance(limit, exp.Limit):
            value = limit.expression
            if isinstance(value, exp.Literal) and value.is_int:
                current = int(value.name)
        elif isinstance(limit, exp.Fetch):
            count = limit.args.get("count")
            if isinstance(count, exp.Literal) and count.is_int:
                current = int(count.name)
        if current is not None and current <= cap:
            return current
        # one row beyond the cap: the database layer fetches it only to tell that the result
        # was cut (QueryResult.truncated) and returns ``cap`` rows. Built directly:
        # Query.limit() would tokenize and parse the number.
        tree.set("limit", exp.Limit(expression=exp.Literal.number(cap + 1)))
        return cap

"""Which tables a query may read: the guard's table check (``sql/guard.py``).

A snapshot names a table of the default schema by its own name and a table of another listed
schema (``TABLECHAT_SCHEMAS``) as ``schema.table``. A reference qualified by this database's
own names (its default schema, ``main``, its catalog) reads the first kind; one qualified by a
listed schema reads the second; any other qualifier (``pg_catalog``, ``information_schema``,
Trino's ``system``, another project) is outside this database.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlglot import exp

from ..errors import InvalidSQLError, UnsafeSQLError


class TableNames:
    """The tables of one guard's schema and the qualifiers that mean "this database"."""

    def __init__(self, tables: Iterable[str], qualifiers: Iterable[str]) -> None:
        self.tables = {t.lower(): t for t in tables}
        self.qualifiers = {q.lower() for q in qualifiers}
        self.dotted = any("." in t for t in self.tables)  # tables of other schemas
        self.listing = ", ".join(sorted(self.tables.values())[:30])

    def key(self, table: exp.Table) -> str:
        """The schema key a table reference reads: ``schema.table`` (lower case) when it names
        a schema other than this database's own (TABLECHAT_SCHEMAS), else its name."""
        db = table.args.get("db")
        if db is not None and db.name.lower() not in self.qualifiers:
            return f"{db.name}.{table.name}".lower()
        return table.name.lower()

    def check(self, table: exp.Table, cte_names: set[str], text: str) -> None:
        """Refuse a table reference outside this database: another catalog, an unlisted
        schema, a file path; an unknown name is an invalid query (with the tables listed).
        A schema.table written as one quoted name is rewritten in place to the table."""
        target = table.this
        if isinstance(target, exp.Func):  # checked by the walk
            return
        if not isinstance(target, exp.Identifier):
            raise UnsafeSQLError(f"unsupported table expression {target.sql()!r}", sql=text)
        name = table.name
        if "/" in name and name.lower() not in self.tables:  # Spark's csv.`/path`, a URL
            raise UnsafeSQLError(f"reading files ({name!r}) is not allowed", sql=text)
        catalog, db = table.args.get("catalog"), table.args.get("db")
        if catalog is not None and catalog.name.lower() not in self.qualifiers:
            raise UnsafeSQLError(
                f"table {table.sql()} is outside this database (only its own tables)", sql=text)
        key = self.key(table)
        if db is not None and db.name.lower() not in self.qualifiers:
            # another schema: only the tables of the schemas listed (TABLECHAT_SCHEMAS), never
            # pg_catalog, information_schema, system. ... unless listed
            if key not in self.tables:
                raise UnsafeSQLError(
                    f"table {table.sql()} is outside this database (only its own tables)",
                    sql=text,
                )
            return
        if db is None and key in cte_names:
            return
        if db is None and "." in name and key in self.tables:
            # "extra.notes" as one quoted name (the offline engine writes table names so):
            # the table extra.notes, under that name for the query's column references
            schema, _, own = self.tables[key].partition(".")
            table.set("this", exp.to_identifier(own, quoted=True))
            table.set("db", exp.to_identifier(schema, quoted=True))
            if not table.alias:
                table.set("alias", exp.TableAlias(this=exp.to_identifier(name, quoted=True)))
            return
        if key not in self.tables or "." in key:
            if "." in name or "/" in name:
                raise UnsafeSQLError(f"reading files ({name!r}) is not allowed", sql=text)
            raise InvalidSQLError(f"unknown table {name!r}; tables are: {self.listing}",
                                  sql=text)

    def canonical(self, table: exp.Table) -> str:
        """The name a checked reference reads, as the schema spells it (a schema-qualified
        one: ``schema.table``)."""
        if table.args.get("db") is not None:
            return self.tables.get(self.key(table), table.name)
        return table.name

    def flatten(self, tree: exp.Expr) -> None:
        """Rewrite schema.table references in place as the one name the guard's sqlglot
        schema maps them by, for ``qualify``."""
        if self.dotted:
            # the schema maps "schema.table" as one name (sqlglot's MappingSchema wants every
            # table at one depth): read schema.table references as that name
            for table in tree.find_all(exp.Table):
                key = self.key(table)
                if table.args.get("db") is not None and "." in key and key in self.tables:
                    alias = table.alias or table.name
                    table.set("db", None)
                    table.set("catalog", None)
                    table.set("this", exp.to_identifier(self.tables[key], quoted=True))
                    table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))

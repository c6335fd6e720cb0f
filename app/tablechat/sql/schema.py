"""Schema snapshots: what the LLM, the guard and the offline engine know about a database."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

TEXT_TYPES = ("VARCHAR", "TEXT", "CHAR", "STRING", "CLOB", "NVARCHAR", "NCHAR", "ENUM")
NUMERIC_TYPES = (
    "INT",
    "DECIMAL",
    "NUMERIC",
    "DOUBLE",
    "FLOAT",
    "REAL",
    "HUGEINT",
    "BIGINT",
    "SMALLINT",
    "TINYINT",
    "NUMBER",
    "UBIGINT",
    "UINTEGER",
)
TEMPORAL_TYPES = ("DATE", "TIME", "TIMESTAMP", "DATETIME", "INTERVAL")


def type_family(sql_type: str) -> str:
    """'text', 'number', 'temporal', 'boolean' or 'other' for a declared column type."""
    upper = (sql_type or "").upper()
    if upper.startswith("BOOL"):
        return "boolean"
    if any(t in upper for t in TEMPORAL_TYPES):
        return "temporal"
    if any(t in upper for t in NUMERIC_TYPES):
        return "number"
    if any(t in upper for t in TEXT_TYPES) or not upper:
        return "text"
    return "other"


@dataclass(slots=True)
class Column:
    name: str
    type: str
    nullable: bool = True
    primary_key: bool = False
    description: str = ""
    samples: list[Any] = field(default_factory=list)

    @property
    def family(self) -> str:
        return type_family(self.type)


@dataclass(frozen=True, slots=True)
class ForeignKey:
    column: str
    ref_table: str
    ref_column: str


@dataclass(slots=True)
class TableInfo:
    name: str
    columns: list[Column]
    row_count: int | None = None
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    description: str = ""
    session_only: bool = False  # an upload visible to one session

    def column(self, name: str) -> Column | None:
        lower = name.lower()
        return next((c for c in self.columns if c.name.lower() == lower), None)

    @property
    def primary_key(self) -> list[str]:
        return [c.name for c in self.columns if c.primary_key]


@dataclass(slots=True)
class SchemaSnapshot:
    """Tables of one database (plus a session's uploads), in the database's dialect."""

    dialect: str
    tables: dict[str, TableInfo]
    name: str = ""
    # rendered prompts, keyed by (tables, samples): a snapshot's text is built once
    _prompts: dict[tuple[tuple[str, ...] | None, bool], str] = field(
        default_factory=dict, repr=False, compare=False
    )

    def table(self, name: str) -> TableInfo | None:
        lower = name.lower()
        return next((t for n, t in self.tables.items() if n.lower() == lower), None)

    def guard_schema(self) -> dict[str, dict[str, str]]:
        """table → column → type, as sqlglot's qualify takes it."""
        return {t.name: {c.name: c.type or "TEXT" for c in t.columns} for t in self.tables.values()}

    def with_tables(self, extra: list[TableInfo]) -> SchemaSnapshot:
        tables = dict(self.tables)
        for t in extra:
            tables[t.name] = t
        return SchemaSnapshot(self.dialect, tables, self.name)

    def to_prompt(self, tables: list[str] | None = None, *, samples: bool = True) -> str:
        """Schema as compact DDL with descriptions, keys and sample values, for an LLM."""
        key = (tuple(tables) if tables else None, samples)
        text = self._prompts.get(key)
        if text is None:
            chosen = [self.tables[n] for n in (tables or list(self.tables)) if n in self.tables]
            text = "\n\n".join(render_table(t, samples=samples) for t in chosen)
            self._prompts[key] = text
        return text


def split_name(name: str) -> tuple[str | None, str]:
    """(schema, table) of a snapshot's table name: a table outside the default schema is
    named ``schema.table`` (``TABLECHAT_SCHEMAS``); any other name is the table's own."""
    schema, dot, table = name.partition(".")
    if dot and schema and table:
        return schema, table
    return None, name


def table_ref(name: str) -> exp.Table:
    """A sqlglot table node for a snapshot's table name, quoted, with its schema if any."""
    schema, table = split_name(name)
    db = exp.to_identifier(schema, quoted=True) if schema else None
    return exp.Table(this=exp.to_identifier(table, quoted=True), db=db)


def render_table(table: TableInfo, *, samples: bool = True) -> str:
    lines = []
    if table.description:
        lines.append(f"-- {table.description}")
    count = f" -- {table.row_count} rows" if table.row_count is not None else ""
    lines.append(f"CREATE TABLE {table.name} ({count}")
    parts = []
    for col in table.columns:
        text = f"  {col.name} {col.type or 'TEXT'}"
        if col.primary_key:
            text += " PRIMARY KEY"
        notes = []
        if col.description:
            notes.append(col.description)
        if samples and col.samples:
            shown = ", ".join(repr(s) if isinstance(s, str) else str(s) for s in col.samples)
            notes.append(f"values: {shown}")
        parts.append((text, notes))
    fk_lines = [
        f"  FOREIGN KEY ({fk.column}) REFERENCES {fk.ref_table}({fk.ref_column})"
        for fk in table.foreign_keys
    ]
    total = len(parts) + len(fk_lines)
    for i, (text, notes) in enumerate(parts):
        sep = "," if i < total - 1 else ""
        lines.append(f"{text}{sep}" + (f" -- {' | '.join(notes)}" if notes else ""))
    for j, fk in enumerate(fk_lines):
        lines.append(fk + ("," if len(parts) + j < total - 1 else ""))
    lines.append(");")
    return "\n".join(lines)

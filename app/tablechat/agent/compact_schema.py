"""The schema as one line per table, for small local models on a CPU (issue 13).

    orders(id, customer_id, store_id, order_date, status ('cancelled', 'completed'), channel)

On llama.cpp with a 135M model every prompt token is prefilled on the CPU, and the long form
(``CREATE TABLE`` with comments, types and five sample values a column, then the semantic
layer) made the SQL prompt ~1,800 tokens, more than LangChain's classic chain sends. The
model writes under the schema's grammar (:mod:`.grammar`), which already knows the types, the
keys and how tables join, so the prompt needs only the names: a table, its columns in order,
and the values of a text column when they are few and all known (fewer than the snapshot
samples, or no more than the table's rows), because a filter must spell them exactly.

The text is the same for every question on a snapshot (it goes in the cached prefix).
"""

from __future__ import annotations

import re

from ..sql.schema import Column, SchemaSnapshot, TableInfo
from .relevance import words
from .sql_names import sql_name

SAMPLE_VALUES = 5  # what the databases sample per text column (sql/base.py sample_values)
MAX_VALUES = 5  # values shown for one column: a closed list of categories, not data
MAX_VALUE_CHARS = 24  # a longer value is data (a name, a note), not a category
MAX_COLUMNS = 40  # columns a line shows (~200 tokens); the grammar still names them all


def all_values_known(column: Column, table: TableInfo) -> bool:
    """Whether the snapshot holds every value of ``column``: the sampler found fewer than it
    takes, or the table has no more rows than there are samples. The compact prompt lists
    such a column's values and the grammar (:mod:`.grammar`) lets a filter name only them."""
    return bool(column.samples) and (len(column.samples) < SAMPLE_VALUES or (
        table.row_count is not None and table.row_count <= len(column.samples)))


_KEY = re.compile(r"(?:^|_)id$", re.I)  # "id", "customer_id" (not "paid")
_CAMEL_KEY = re.compile(r"[a-z]Id$")  # "customerId"


def is_key(column: Column) -> bool:
    """Whether ``column`` is a key (its table's primary key, or named like one): it joins
    rows; it is no value a question filters, ranks or lists by."""
    return column.primary_key or bool(_KEY.search(column.name) or _CAMEL_KEY.search(column.name))


def label_column(table: TableInfo) -> Column | None:
    """The column that names a table's rows: its first text column that is no key, one
    called "...name..." first."""
    labels = [c for c in table.columns if c.family == "text" and not is_key(c)]
    labels.sort(key=lambda c: "name" not in c.name.lower())
    return labels[0] if labels else None


def _values(column: Column, table: TableInfo) -> str:
    """`` ('a', 'b')`` when the column's values are few, short and all known; else ""."""
    if column.family != "text" or not column.samples or column.primary_key:
        return ""
    samples = [s for s in column.samples if isinstance(s, str)]
    if (not all_values_known(column, table) or len(samples) != len(column.samples)
            or len(samples) > MAX_VALUES
            or any(len(s) > MAX_VALUE_CHARS or "'" in s for s in samples)):
        return ""
    return " (" + ", ".join(f"'{s}'" for s in samples) + ")"


def _shown(table: TableInfo, asked: set[str] | None) -> list[Column]:
    """The columns a line shows: all, or for a table wider than ``MAX_COLUMNS`` the keys, the
    columns the question's words name, then the first others, ``MAX_COLUMNS`` in all, in the
    table's order (a 500-column upload made a "compact" prompt longer than the context)."""
    if len(table.columns) <= MAX_COLUMNS:
        return list(table.columns)
    named = asked or set()
    first = [c for c in table.columns if is_key(c) or words(c.name) & named]
    rest = [c for c in table.columns if c not in first]
    kept = {c.name for c in [*first, *rest][:MAX_COLUMNS]}
    return [c for c in table.columns if c.name in kept]


def compact_table(table: TableInfo, dialect: str = "duckdb",
                  asked: set[str] | None = None) -> str:
    """``table(col, col ('v1', 'v2'), ...)``, names written as the dialect's SQL needs them;
    a wide table's line ends with ``...`` after its ``MAX_COLUMNS`` most useful columns."""
    shown = _shown(table, asked)
    columns = ", ".join(sql_name(c.name, dialect) + _values(c, table) for c in shown)
    more = ", ..." if len(shown) < len(table.columns) else ""
    return f"{sql_name(table.name, dialect)}({columns}{more})"


def compact_schema(snapshot: SchemaSnapshot, tables: list[str] | None = None,
                   question: str | None = None) -> str:
    """One line per table of ``snapshot`` (``tables`` only, in the snapshot's order, when
    given); a wide table shows the columns ``question`` names first."""
    dialect = snapshot.dialect or "duckdb"
    wanted = set(tables) if tables is not None else None
    asked = words(question) if question is not None else None
    return "\n".join(compact_table(t, dialect, asked) for name, t in snapshot.tables.items()
                     if wanted is None or name in wanted)


__all__ = ["all_values_known", "compact_schema", "compact_table", "is_key", "label_column"]

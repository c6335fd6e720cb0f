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

from ..sql.schema import Column, SchemaSnapshot, TableInfo
from .sql_names import sql_name

SAMPLE_VALUES = 5  # what the databases sample per text column (sql/base.py sample_values)
MAX_VALUES = 5  # values shown for one column: a closed list of categories, not data
MAX_VALUE_CHARS = 24  # a longer value is data (a name, a note), not a category


def all_values_known(column: Column, table: TableInfo) -> bool:
    """Whether the snapshot holds every value of ``column``: the sampler found fewer than it
    takes, or the table has no more rows than there are samples. The compact prompt lists
    such a column's values and the grammar (:mod:`.grammar`) lets a filter name only them."""
    return bool(column.samples) and (len(column.samples) < SAMPLE_VALUES or (
        table.row_count is not None and table.row_count <= len(column.samples)))


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


def compact_table(table: TableInfo, dialect: str = "duckdb") -> str:
    """``table(col, col ('v1', 'v2'), ...)``, names written as the dialect's SQL needs them."""
    columns = ", ".join(sql_name(c.name, dialect) + _values(c, table) for c in table.columns)
    return f"{sql_name(table.name, dialect)}({columns})"


def compact_schema(snapshot: SchemaSnapshot, tables: list[str] | None = None) -> str:
    """One line per table of ``snapshot`` (``tables`` only, in the snapshot's order, when
    given)."""
    dialect = snapshot.dialect or "duckdb"
    wanted = set(tables) if tables is not None else None
    return "\n".join(compact_table(t, dialect) for name, t in snapshot.tables.items()
                     if wanted is None or name in wanted)


__all__ = ["all_values_known", "compact_schema", "compact_table"]

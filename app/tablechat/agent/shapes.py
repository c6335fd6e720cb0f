"""Worked examples made from the schema itself, for models too small to know SQL's shapes
(issue 13: SmolLM2-135M wrote ``SELECT name, name, name, ...`` and answered with literals).

One example, the same for every question on a database (so it sits in the prompt's cached
prefix): a count per row of a referenced table, joined on its key and grouped. (A second one,
a count filtered on a sample value, was copied whole by SmolLM2 into an unrelated question:
"How many products ...?" became that example's ``FROM orders WHERE status = 'cancelled'``.)
It teaches the shapes the schema grammar admits (``GROUP BY ALL``, joins on declared keys,
names qualified by their table) with the database's own names; it is built from structure
alone, never from a question set. Shown only when no verified examples (issue 14) are.
"""

from __future__ import annotations

from ..sql.schema import SchemaSnapshot, TableInfo
from .compact_schema import label_column
from .join_paths import edges_of
from .sql_names import sql_name


def _rows(info: TableInfo) -> int:
    return info.row_count or 0


def _group_example(snapshot: SchemaSnapshot, dialect: str) -> str | None:
    """A count per row of a referenced table with a text column, joined on the key."""
    edges = sorted(edges_of(snapshot.tables),
                   key=lambda e: (-_rows(snapshot.tables[e.left]), e.left, e.right))
    labelled = []
    for edge in edges:
        label = label_column(snapshot.tables[edge.right])  # a name reads best
        if label is not None:
            labelled.append((edge, label))
    labelled.sort(key=lambda pair: "name" not in pair[1].name.lower())  # stable: rows order
    for edge, label in labelled[:1]:
        child, ref = sql_name(edge.left, dialect), sql_name(edge.right, dialect)
        on = (f"{ref}.{sql_name(edge.right_column, dialect)} = "
              f"{child}.{sql_name(edge.left_column, dialect)}")
        col = f"{ref}.{sql_name(label.name, dialect)}"
        group = "GROUP BY ALL" if dialect == "duckdb" else f"GROUP BY {col}"
        return (f"- Q: Which 5 {edge.right} ({label.name}) have the most {edge.left}?\n"
                f"  SQL: SELECT {col}, count(*) FROM {child} JOIN {ref} ON {on} {group} "
                f"ORDER BY count(*) DESC LIMIT 5")
    return None


def schema_examples(snapshot: SchemaSnapshot) -> str:
    """The examples as the prompt shows verified ones ("" when the schema gives none)."""
    dialect = snapshot.dialect or "duckdb"
    return _group_example(snapshot, dialect) or ""


def count_example(snapshot: SchemaSnapshot) -> tuple[str, str, str] | None:
    """(table, question, SQL) of a count over the schema's narrowest table, the same for every
    question on a database: the SQL prompt's example turn for a small model under the
    grammar, which copies an example's shape (a join example became the answer to "How many
    products ...?"), so the shape taught is the commonest and the simplest."""
    dialect = snapshot.dialect or "duckdb"
    tables = sorted(snapshot.tables.values(), key=lambda t: (len(t.columns), t.name))
    for info in tables:
        if info.columns:
            name = sql_name(info.name, dialect)
            return info.name, f"How many {info.name} are there?", f"SELECT count(*) FROM {name};"
    return None


__all__ = ["count_example", "schema_examples"]

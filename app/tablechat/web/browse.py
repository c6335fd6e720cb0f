"""The schema browser and the example questions, from ``tc.snapshot(session)``."""

from __future__ import annotations

import pandas as pd

from ..core import TableChat
from ..sql.schema import SchemaSnapshot, TableInfo
from .markup import plain

DEMO_EXAMPLES = [
    "How many customers are there?",
    "Revenue by region",
    "Top 5 products by revenue",
    "Monthly revenue in 2024",
    "How many orders per customer segment?",
]
MAX_EXAMPLES = 5


def tables_frame(snap: SchemaSnapshot) -> pd.DataFrame:
    rows = [
        {
            "table": t.name,
            "rows": t.row_count if t.row_count is not None else "",
            "columns": len(t.columns),
            "source": "your upload" if t.session_only else "database",
            "description": t.description,
        }
        for t in snap.tables.values()
    ]
    return pd.DataFrame(rows, columns=["table", "rows", "columns", "source", "description"])


def columns_frame(snap: SchemaSnapshot, table: str | None) -> pd.DataFrame:
    info = snap.table(table) if table else None
    cols = ["column", "type", "key", "description", "sample values"]
    if info is None:
        return pd.DataFrame([], columns=cols)
    fks = {fk.column: f"→ {fk.ref_table}.{fk.ref_column}" for fk in info.foreign_keys}
    rows = []
    for c in info.columns:
        key = "primary key" if c.primary_key else fks.get(c.name, "")
        rows.append([c.name, c.type, key, c.description, ", ".join(str(s) for s in c.samples)])
    return pd.DataFrame(rows, columns=cols)


def table_summary(snap: SchemaSnapshot, table: str | None) -> str:
    info = snap.table(table) if table else None
    if info is None:
        return "Pick a table to see its columns."
    count = f"{info.row_count:,} rows" if info.row_count is not None else "rows unknown"
    where = " · uploaded by you, visible only in this session" if info.session_only else ""
    # names and descriptions come from the data (comments, uploads): shown as text
    desc = f"\n\n{plain(info.description)}" if info.description else ""
    return f"**{plain(info.name)}** — {len(info.columns)} columns, {count}{where}{desc}"


def example_questions(tc: TableChat) -> list[str]:
    """Questions that suit the current database: curated for the demo (the first one is
    answerable offline), else built from the schema."""
    if tc.semantic is not None and tc.semantic.name == "demo":
        return list(DEMO_EXAMPLES)
    return schema_examples(tc.snapshot())


def _label(name: str) -> str:
    return name.replace("_", " ")


def schema_examples(snap: SchemaSnapshot) -> list[str]:
    tables = sorted(snap.tables.values(), key=lambda t: -(t.row_count or 0))
    out: list[str] = []
    if not tables:
        return out
    main = tables[0]
    out.append(f"How many {_label(main.name)} are there?")
    for t in tables:
        group = _group_column(t)
        measure = _measure_column(t)
        if group and measure and len(out) < MAX_EXAMPLES:
            out.append(f"Total {_label(measure)} by {_label(group)} in {_label(t.name)}")
        elif group and len(out) < MAX_EXAMPLES:
            out.append(f"How many {_label(t.name)} per {_label(group)}?")
        if measure and len(out) < MAX_EXAMPLES:
            out.append(f"Top 5 {_label(t.name)} by {_label(measure)}")
        if len(out) >= MAX_EXAMPLES:
            break
    return list(dict.fromkeys(out))[:MAX_EXAMPLES]


def _group_column(t: TableInfo) -> str | None:
    for c in t.columns:
        if c.family == "text" and c.samples and not c.primary_key and c.name.lower() != "name":
            return c.name
    return None


def _measure_column(t: TableInfo) -> str | None:
    for c in t.columns:
        low = c.name.lower()
        if c.family == "number" and not c.primary_key and low != "id" and not low.endswith("_id"):
            return c.name
    return None

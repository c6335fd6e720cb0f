"""Which tables one query may read together, and how they join: the foreign-key graph of a
schema snapshot, walked into small connected sets of tables (one table, two, three), each with
the FROM clauses that join them on their keys.

The SQL grammar (:mod:`.grammar`) gives each set a branch of its own whose column names come
only from the set's tables, so a query names only columns of the tables in its FROM, and a
join is always on a declared key (a small model wrote ``JOIN orders ON customers.id =
orders.id`` and invented aliases it never defined, issue 13).

Where a snapshot declares no foreign keys (a CSV upload, many SQLite files), the usual naming
is read as one: ``orders.customer_id`` → ``customers.id`` (the column is ``<table>_id`` or
``<singular table>_id``, the other table has an ``id`` key), or a column named like another
table's single-column primary key (Spider's ``StuID``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from ..sql.schema import TableInfo

MAX_JOIN_TABLES = 3  # tables one query may join (two joins)


@dataclass(frozen=True, slots=True)
class Edge:
    """``left.left_column`` references ``right.right_column``."""

    left: str
    left_column: str
    right: str
    right_column: str


def _singular(name: str) -> str:
    lower = name.lower()
    if lower.endswith("ies"):
        return lower[:-3] + "y"
    if lower.endswith(("ses", "xes", "ches", "shes")):
        return lower[:-2]
    return lower[:-1] if lower.endswith("s") else lower


def _inferred(tables: dict[str, TableInfo]) -> list[Edge]:
    """Keys read from names, for snapshots that declare none."""
    edges = []
    keyed = {name: info.primary_key for name, info in tables.items()}
    for name, info in tables.items():
        for column in info.columns:
            low = column.name.lower()
            for other, other_info in tables.items():
                if other == name:
                    continue
                pk = keyed[other]
                ids = [c.name for c in other_info.columns if c.name.lower() == "id"]
                if ids and low in {f"{other.lower()}_id", f"{_singular(other)}_id"}:
                    edges.append(Edge(name, column.name, other, ids[0]))
                elif (len(pk) == 1 and pk[0].lower() == low and low != "id"
                      and column.name not in info.primary_key):
                    edges.append(Edge(name, column.name, other, pk[0]))
    return edges


def edges_of(tables: dict[str, TableInfo]) -> list[Edge]:
    """The foreign keys between distinct tables of ``tables`` (declared, else inferred)."""
    declared = [
        Edge(name, fk.column, fk.ref_table, fk.ref_column)
        for name, info in tables.items() for fk in info.foreign_keys
        if fk.ref_table in tables and fk.ref_table != name
        and info.column(fk.column) is not None
        and tables[fk.ref_table].column(fk.ref_column) is not None
    ]
    return declared or _inferred(tables)


def table_sets(names: list[str], edges: list[Edge], limit: int) -> list[tuple[str, ...]]:
    """Up to ``limit`` sets of tables a query may read: every table alone (in ``names``' order,
    the most relevant first), then the pairs a key joins, then chains of three."""
    linked: dict[frozenset[str], None] = {}
    pairs = {frozenset((e.left, e.right)) for e in edges}
    out: list[tuple[str, ...]] = [(n,) for n in names]
    rank = {n: i for i, n in enumerate(names)}
    for size in range(2, MAX_JOIN_TABLES + 1):
        for combo in itertools.combinations(names, size):
            group = frozenset(combo)
            if group in linked or not _connected(group, pairs):
                continue
            linked[group] = None
            out.append(tuple(sorted(group, key=rank.__getitem__)))
    return out[:limit]


def _connected(group: frozenset[str], pairs: set[frozenset[str]]) -> bool:
    """Whether the key pairs within ``group`` connect all of it."""
    start = next(iter(group))
    seen, todo = {start}, [start]
    while todo:
        here = todo.pop()
        for pair in pairs:
            if here in pair and pair <= group:
                (other,) = pair - {here}
                if other not in seen:
                    seen.add(other)
                    todo.append(other)
    return seen == group


def from_clauses(tables: tuple[str, ...], edges: list[Edge],
                 shown: Callable[[str], str], column: Callable[[str], str]) -> list[str]:
    """Every FROM clause (SQL text) that reads ``tables`` joined on their keys: each order in
    which every table joins one already read. ``shown``/``column`` write a table/column name
    as the dialect needs it."""
    if len(tables) == 1:
        return [shown(tables[0])]
    clauses = []
    for order in itertools.permutations(tables):
        text = shown(order[0])
        for i, table in enumerate(order[1:], start=1):
            before = set(order[:i])
            edge = next((e for e in edges if (e.left == table and e.right in before)
                         or (e.right == table and e.left in before)), None)
            if edge is None:
                break
            mine, theirs = ((edge.left, edge.left_column), (edge.right, edge.right_column))
            if table != edge.left:
                mine, theirs = theirs, mine
            # the new table's side first, as people write it
            text += (f" JOIN {shown(table)} ON {shown(mine[0])}.{column(mine[1])} = "
                     f"{shown(theirs[0])}.{column(theirs[1])}")
        else:
            clauses.append(text)
    return clauses


__all__ = ["MAX_JOIN_TABLES", "Edge", "edges_of", "from_clauses", "table_sets"]

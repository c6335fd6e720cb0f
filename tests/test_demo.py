"""The demo database, its semantic layer and its question set."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
import yaml
from sqlglot import exp

from tablechat import demo
from tablechat._resources import resource_path

TABLES = ["regions", "stores", "categories", "products", "customers", "orders", "order_items"]

# (table, column) -> referenced table; every foreign key is <table>_id -> <table>s(id)
FOREIGN_KEYS = {
    ("stores", "region_id"): "regions",
    ("products", "category_id"): "categories",
    ("customers", "region_id"): "regions",
    ("orders", "customer_id"): "customers",
    ("orders", "store_id"): "stores",
    ("order_items", "order_id"): "orders",
    ("order_items", "product_id"): "products",
}

KINDS = {"count", "aggregate", "group_by", "top_n", "filter", "date_range", "join"}


def _questions() -> list[dict[str, Any]]:
    path = resource_path("data/questions/demo.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _semantic() -> dict[str, Any]:
    data = yaml.safe_load(demo.demo_semantic_layer_path().read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo.build_demo(tmp_path_factory.mktemp("demo") / "demo.duckdb")


@pytest.fixture
def con(demo_db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect(str(demo_db), read_only=True)
    try:
        yield c
    finally:
        c.close()


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def _fingerprints(path: Path) -> dict[str, tuple[Any, ...]]:
    c = duckdb.connect(str(path), read_only=True)
    try:
        out: dict[str, tuple[Any, ...]] = {}
        for t in TABLES:
            row = c.execute(f"SELECT count(*), sum(hash(t)) FROM {t} AS t").fetchone()
            assert row is not None
            out[t] = tuple(row)
        return out
    finally:
        c.close()


# --- building ---------------------------------------------------------------------------------
def test_build_is_deterministic_and_force_rebuilds(demo_db: Path, tmp_path: Path) -> None:
    other = tmp_path / "again.duckdb"
    other.write_text("not a database")
    assert demo.build_demo(other) == other.resolve()
    assert other.read_text() == "not a database"  # existing file left alone without force

    demo.build_demo(other, force=True)
    first, second = _fingerprints(demo_db), _fingerprints(other)
    assert first == second
    assert all(count > 0 for count, _ in first.values())


def test_build_leaves_no_temporary_files(demo_db: Path) -> None:
    assert sorted(p.name for p in demo_db.parent.iterdir()) == [demo_db.name]


def test_interrupted_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.sql"
    broken.write_text(
        "CREATE TABLE regions (id INTEGER PRIMARY KEY);\n"
        "INSERT INTO regions VALUES (1);\n"
        "SELECT no_such_function();\n"
    )
    monkeypatch.setattr(demo, "resource_path", lambda relative: broken)
    out = tmp_path / "out"
    target = out / "demo.duckdb"
    with pytest.raises(duckdb.Error):
        demo.build_demo(target)
    assert not target.exists()
    assert list(out.iterdir()) == []


def test_default_path_in_checkout_and_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "checkout_root", lambda: tmp_path / "checkout")
    assert demo.default_demo_path() == tmp_path / "checkout" / "data" / "demo.duckdb"

    monkeypatch.setattr(demo, "checkout_root", lambda: None)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert demo.default_demo_path() == tmp_path / "xdg" / "tablechat" / "demo.duckdb"

    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".local" / "share" / "tablechat" / "demo.duckdb"
    assert demo.default_demo_path() == expected


def test_ensure_demo_builds_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "checkout_root", lambda: None)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    path = demo.ensure_demo()
    assert path == (tmp_path / "tablechat" / "demo.duckdb").resolve()
    c = duckdb.connect(str(path), read_only=True)
    try:
        assert _one(c, "SELECT count(*) FROM orders") > 0
    finally:
        c.close()
    mtime = path.stat().st_mtime_ns
    assert demo.ensure_demo() == path
    assert path.stat().st_mtime_ns == mtime


# --- the data ---------------------------------------------------------------------------------
def test_row_counts(con: duckdb.DuckDBPyConnection) -> None:
    counts = {t: _one(con, f"SELECT count(*) FROM {t}") for t in TABLES}
    assert counts["regions"] == 5
    assert 35 <= counts["stores"] <= 45
    assert 8 <= counts["categories"] <= 12
    assert 250 <= counts["products"] <= 350
    assert 4500 <= counts["customers"] <= 5500
    assert 35_000 <= counts["orders"] <= 45_000
    assert counts["order_items"] >= 100_000


def test_foreign_keys_have_no_orphans(con: duckdb.DuckDBPyConnection) -> None:
    for (table, column), parent in FOREIGN_KEYS.items():
        orphans = _one(
            con,
            f"SELECT count(*) FROM {table} c LEFT JOIN {parent} p ON p.id = c.{column} "
            f"WHERE p.id IS NULL",
        )
        assert orphans == 0, f"{table}.{column}"
    empty = "SELECT count(*) FROM orders o WHERE NOT EXISTS "
    empty += "(SELECT 1 FROM order_items i WHERE i.order_id = o.id)"
    assert _one(con, empty) == 0


def test_keys_are_declared_in_catalog(con: duckdb.DuckDBPyConnection) -> None:
    rows = con.execute(
        "SELECT table_name, constraint_type, constraint_column_names, referenced_table "
        "FROM duckdb_constraints() WHERE constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY')"
    ).fetchall()
    primary = {t for t, kind, cols, _ in rows if kind == "PRIMARY KEY" and cols == ["id"]}
    assert primary == set(TABLES)
    foreign = {(t, cols[0]): ref for t, kind, cols, ref in rows if kind == "FOREIGN KEY"}
    assert foreign == FOREIGN_KEYS


def test_values_are_plausible(con: duckdb.DuckDBPyConnection) -> None:
    first, last = con.execute("SELECT min(order_date), max(order_date) FROM orders").fetchall()[0]
    assert (first, last) == (dt.date(2022, 1, 1), dt.date(2024, 12, 31))
    statuses = {r[0] for r in con.execute("SELECT DISTINCT status FROM orders").fetchall()}
    assert statuses == {"completed", "shipped", "cancelled", "returned"}
    channels = {r[0] for r in con.execute("SELECT DISTINCT channel FROM orders").fetchall()}
    assert channels == {"online", "in-store", "phone"}
    segments = {r[0] for r in con.execute("SELECT DISTINCT segment FROM customers").fetchall()}
    assert segments == {"Consumer", "Corporate", "Small Business"}
    regions = {r[0] for r in con.execute("SELECT name FROM regions").fetchall()}
    assert {"Europe", "North America", "Asia Pacific"} <= regions

    checks = {
        "order before signup": "SELECT count(*) FROM orders o JOIN customers c "
        "ON c.id = o.customer_id WHERE o.order_date < c.signup_date",
        "order before store opened": "SELECT count(*) FROM orders o JOIN stores s "
        "ON s.id = o.store_id WHERE o.order_date < s.opened_on",
        # so "revenue by region" means the same via stores or via customers
        "store outside customer's region": "SELECT count(*) FROM orders o "
        "JOIN customers c ON c.id = o.customer_id JOIN stores s ON s.id = o.store_id "
        "WHERE s.region_id <> c.region_id",
        "bad quantity or discount": "SELECT count(*) FROM order_items "
        "WHERE quantity < 1 OR discount < 0 OR discount >= 0.5 OR unit_price <= 0",
        "cost not below price": "SELECT count(*) FROM products WHERE cost >= unit_price",
        "duplicate product in an order": "SELECT count(*) FROM (SELECT order_id, product_id "
        "FROM order_items GROUP BY ALL HAVING count(*) > 1)",
        "duplicate email": "SELECT count(*) - count(DISTINCT email) FROM customers",
    }
    for what, sql in checks.items():
        assert _one(con, sql) == 0, what

    by_month = dict(
        con.execute("SELECT month(order_date), count(*) FROM orders GROUP BY 1").fetchall()
    )
    assert by_month[12] > by_month[2] * 1.5  # holiday peak
    by_year = dict(
        con.execute("SELECT year(order_date), count(*) FROM orders GROUP BY 1").fetchall()
    )
    assert by_year[2022] < by_year[2023] < by_year[2024]  # growth


# --- question set -----------------------------------------------------------------------------
QUESTIONS = _questions()


def test_question_set_shape() -> None:
    assert len(QUESTIONS) >= 60
    ids = [q["id"] for q in QUESTIONS]
    assert len(ids) == len(set(ids))
    for q in QUESTIONS:
        assert set(q) == {"id", "db_id", "question", "gold_sql", "kind"}, q["id"]
        assert q["db_id"] == "demo"
        assert q["kind"] in KINDS, q["id"]
        assert q["question"].strip() and q["gold_sql"].strip()
    assert set(Counter(q["kind"] for q in QUESTIONS)) == KINDS


@pytest.mark.parametrize("question", QUESTIONS, ids=[q["id"] for q in QUESTIONS])
def test_gold_sql_returns_rows(con: duckdb.DuckDBPyConnection, question: dict[str, Any]) -> None:
    sqlglot.parse_one(question["gold_sql"], read="duckdb")  # the guard must be able to parse it
    rows = con.execute(question["gold_sql"]).fetchall()
    assert rows, question["question"]
    assert rows[0][0] not in (None, 0), question["question"]


# --- semantic layer ---------------------------------------------------------------------------
def _catalog(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for table, column in con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() "
        "WHERE NOT internal AND schema_name = 'main'"
    ).fetchall():
        out.setdefault(table, set()).add(column)
    return out


def _join_edges(semantic: dict[str, Any]) -> list[tuple[str, str, str]]:
    edges = []
    for join in semantic["joins"]:
        left, right = (side.strip() for side in join.split("="))
        lt, lc = left.split(".")
        rt, rc = right.split(".")
        edges.append((lt, rt, f"{lt}.{lc} = {rt}.{rc}"))
    return edges


def test_semantic_layer_matches_schema(con: duckdb.DuckDBPyConnection) -> None:
    semantic = _semantic()
    assert semantic["name"] == "demo" and semantic["description"]
    catalog = _catalog(con)
    assert set(semantic["tables"]) == set(catalog)
    for table, spec in semantic["tables"].items():
        assert spec["description"], table
        assert all(isinstance(s, str) and s for s in spec.get("synonyms", [])), table
        assert set(spec["columns"]) == catalog[table], table  # every column, no invented ones
        for column, col_spec in spec["columns"].items():
            assert col_spec["description"], f"{table}.{column}"
            assert all(isinstance(s, str) and s for s in col_spec.get("synonyms", []))

    declared = set()
    for left, right, condition in _join_edges(semantic):
        lhs, rhs = (side.strip().split(".") for side in condition.split("="))
        assert lhs[1] in catalog[left] and rhs[1] in catalog[right], condition
        declared.add(((left, lhs[1]), right) if rhs[1] == "id" else ((right, rhs[1]), left))
    assert declared == set(FOREIGN_KEYS.items())


def _from_clause(semantic: dict[str, Any], base: str, needed: set[str]) -> str:
    """FROM clause joining ``base`` to every table in ``needed`` along the declared joins."""
    edges = _join_edges(semantic)
    joined, clause = {base}, [base]
    for target in sorted(needed - {base}):
        if target in joined:
            continue
        previous: dict[str, tuple[str, str]] = {}
        queue = deque([base])
        seen = {base}
        while queue:  # breadth-first search from the base table
            node = queue.popleft()
            for a, b, cond in edges:
                for here, there in ((a, b), (b, a)):
                    if here == node and there not in seen:
                        seen.add(there)
                        previous[there] = (node, cond)
                        queue.append(there)
        assert target in seen, f"no join path from {base} to {target}"
        path, node = [], target
        while node != base:
            parent, cond = previous[node]
            path.append((node, cond))
            node = parent
        for table, cond in reversed(path):
            if table not in joined:
                joined.add(table)
                clause.append(f"JOIN {table} ON {cond}")
    return " ".join(clause)


def test_every_metric_runs(con: duckdb.DuckDBPyConnection) -> None:
    semantic = _semantic()
    catalog = _catalog(con)
    assert {
        "revenue",
        "order_count",
        "units_sold",
        "average_order_value",
        "profit",
        "customer_count",
    } <= set(semantic["metrics"])
    values = {}
    for name, metric in semantic["metrics"].items():
        assert metric["description"] and metric["table"] in catalog, name
        tree = sqlglot.parse_one(metric["expression"], read="duckdb")
        rule = metric.get("filter")
        columns = [*tree.find_all(exp.Column)]
        if rule:
            columns += sqlglot.parse_one(rule, read="duckdb").find_all(exp.Column)
        tables = {metric["table"]}
        for column in columns:
            assert column.table in catalog, f"{name}: {column.sql()}"
            assert column.name in catalog[column.table], f"{name}: {column.sql()}"
            tables.add(column.table)
        from_clause = _from_clause(semantic, metric["table"], tables)
        sql = f"SELECT {metric['expression']} FROM {from_clause}" + (
            f" WHERE {rule}" if rule else "")
        values[name] = _one(con, sql)
        assert values[name] is not None and values[name] > 0, name

    gold_total = next(q for q in QUESTIONS if q["question"] == "What is our total revenue?")
    assert values["revenue"] == _one(con, gold_total["gold_sql"])
    assert values["order_count"] == _one(con, "SELECT count(*) FROM orders")
    assert values["profit"] < values["revenue"]
    kept_orders = _one(con, "SELECT count(*) FROM orders WHERE status NOT IN "
                            "('cancelled', 'returned')")
    expected_aov = float(values["revenue"]) / kept_orders
    assert float(values["average_order_value"]) == pytest.approx(expected_aov)


def test_money_metrics_leave_out_cancelled_and_returned_orders(
        con: duckdb.DuckDBPyConnection) -> None:
    """Issue 12: "total sales" counted cancelled and returned orders. The metric says which
    orders it counts, and in words the answer can state."""
    metrics = _semantic()["metrics"]
    for name in ("revenue", "units_sold", "average_order_value", "profit"):
        assert "cancelled" in metrics[name]["filter"], name
        assert "excluding cancelled and returned" in metrics[name]["definition"], name
    everything = _one(con, "SELECT SUM(quantity * unit_price * (1 - discount)) FROM order_items")
    gold = next(q for q in QUESTIONS if q["question"] == "What is our total revenue?")
    assert _one(con, gold["gold_sql"]) < everything


def test_stale_temporary_files_are_cleaned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = tmp_path / "tiny.sql"
    tiny.write_text("CREATE TABLE regions (id INTEGER PRIMARY KEY);")
    monkeypatch.setattr(demo, "resource_path", lambda relative: tiny)
    target = tmp_path / "demo.duckdb"
    stale = tmp_path / "demo.duckdb.123-deadbeef.tmp"
    fresh = tmp_path / "demo.duckdb.456-cafebabe.tmp"
    stale.write_text("killed build")
    fresh.write_text("build in progress elsewhere")
    old = stale.stat().st_mtime - 2 * 3600
    os.utime(stale, (old, old))
    demo.build_demo(target)
    assert target.exists()
    assert not stale.exists()
    assert fresh.exists()

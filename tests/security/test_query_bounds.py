"""Issue 11, classes 2 and 3 (database side): every query is bounded in time, in the bytes its
result holds (in all and per cell), and in the size of any one value it may build."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import duckdb
import pytest
import sqlglot

from tablechat import QueryTimeoutError, UnsafeSQLError
from tablechat.sql.bounds import check_value_bounds, value_bound_problem
from tablechat.sql.database import DuckDBDatabase, ResultLimits, open_database
from tablechat.sql.watchdog import Watchdog
from tests.security.peak_rss import PEAK, run_child

MEMORY_LIMIT_MB = 1024
BUDGET_MB = MEMORY_LIMIT_MB + 512  # the goal: under memory_limit + 512 MB
CELL = 64 * 1024


@pytest.fixture()
def db_file(tmp_path: Path) -> Path:
    path = tmp_path / "t.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t AS SELECT range AS id, 'name ' || range AS name FROM range(50)")
    con.close()
    return path


def _problem(sql: str) -> str | None:
    return value_bound_problem(sqlglot.parse_one(sql, read="duckdb"), max_cell_bytes=CELL)


# --- one huge value ---------------------------------------------------------------------------
@pytest.mark.parametrize("sql", [
    "SELECT length(repeat('x',2000000000))",
    "SELECT id, repeat('y',1000000) FROM range(1000) t(id)",
    "SELECT repeat(repeat('x', 1000), 1000)",
    "SELECT lpad('x', 2000000000, 'y')",
    "SELECT rpad(name, 1e9) FROM t",
    "SELECT space(1000000000)",
    "SELECT unnest(range(1000000000))",
    "SELECT len(generate_series(TIMESTAMP '2000-01-01', TIMESTAMP '2100-01-01', "
    "INTERVAL '1 second'))",
    "SELECT list_resize([1], 1000000000)",
    "SELECT bar(1, 0, 10, 1000000000)",
    "SELECT printf('%2000000000d', 1)",
    "SELECT format('{:>2000000000}', 'x')",
    "SELECT repeat('x', id) FROM t",
    "SELECT repeat((SELECT string_agg(name, ',') FROM t), 1000)",
    "WITH a AS (SELECT repeat('x', 2000000000) AS s) SELECT length(s) FROM a",
    "SELECT id FROM t WHERE name IN (SELECT repeat('x', 1000000000))",
])
def test_statements_that_build_a_huge_value_are_refused(sql: str) -> None:
    problem = _problem(sql)
    assert problem is not None and "\n" not in problem
    with pytest.raises(UnsafeSQLError):
        check_value_bounds(sqlglot.parse_one(sql, read="duckdb"), max_cell_bytes=CELL)


@pytest.mark.parametrize("sql", [
    "SELECT repeat('-', 20), lpad(name, 12, ' '), rpad(name, 12) FROM t",
    "SELECT repeat(name, 3) FROM t",
    "SELECT count(*) FROM range(10000000000)",  # rows stream; the timeout interrupts them
    "SELECT x FROM t, range(t.id) r(x)",
    "SELECT unnest(range(12)) AS month",
    "SELECT unnest(generate_series(DATE '2024-01-01', DATE '2024-12-31', INTERVAL 1 DAY))",
    "SELECT printf('%5.2f', 1.5), format('{:>10}', name) FROM t",
])
def test_ordinary_uses_of_those_functions_pass(sql: str) -> None:
    assert _problem(sql) is None


def test_a_huge_scalar_is_stopped_within_the_memory_budget() -> None:
    """The measured case: 40 s and 4.1 GB against a 5 s timeout and a 1 GB limit. Refused
    before it runs, it costs a parse."""
    run = run_child(PEAK + """
import sqlglot
from tablechat import UnsafeSQLError
from tablechat.sql.bounds import check_value_bounds
sql = "SELECT length(repeat('x',2000000000))"
try:
    check_value_bounds(sqlglot.parse_one(sql, read="duckdb"), max_cell_bytes=65536)
    refused = ""
except UnsafeSQLError as exc:
    refused = str(exc)
report(refused=refused)
""")
    print(f"huge scalar: refused in {run.elapsed_s:.2f} s, peak {run.peak_mb:.0f} MB")
    assert "repeat()" in run.out["refused"]
    assert run.peak_mb < BUDGET_MB


# --- bytes of a result ------------------------------------------------------------------------
def test_a_result_of_huge_cells_stops_at_its_byte_budget(tmp_path: Path) -> None:
    """The measured case through the database layer alone (no guard): 1,000 cells of 1 MB made a
    1 GB response and a 5 GB process. Now at most the byte budget is fetched, cells are cut,
    and the process stays under memory_limit + 512 MB."""
    path = tmp_path / "big.duckdb"
    duckdb.connect(str(path)).close()
    run = run_child(PEAK + f"""
from tablechat.sql.database import DuckDBDatabase
db = DuckDBDatabase({str(path)!r}, timeout=60, memory_limit="{MEMORY_LIMIT_MB}MB")
r = db.execute("SELECT id, repeat('y',1000000) AS s FROM range(1000) t(id)", max_rows=1000)
size = sum(len(row[1]) for row in r.rows)
after = db.execute("SELECT 42", max_rows=10).rows
report(rows=len(r.rows), size=size, truncated=r.truncated, cut_by=r.cut_by,
       cells_cut=r.cells_cut, longest=max(len(row[1]) for row in r.rows), after=after)
""")
    out = run.out
    print(f"1,000 x 1 MB cells: {out['rows']} rows, {out['size']:,} bytes in "
          f"{run.elapsed_s:.2f} s, peak {run.peak_mb:.0f} MB")
    limits = ResultLimits()
    assert out["truncated"] and out["cut_by"] == "bytes"
    assert out["size"] <= limits.max_bytes
    assert out["longest"] == limits.max_cell_bytes + 1  # cut, and marked with "…"
    assert out["cells_cut"] == out["rows"] > 0
    assert out["after"] == [[42]]
    assert run.peak_mb < BUDGET_MB


def test_cells_are_cut_and_marked_and_small_values_kept(db_file: Path) -> None:
    limits = ResultLimits(max_bytes=1_000_000, max_cell_bytes=100)
    with DuckDBDatabase(db_file, limits=limits) as db:
        r = db.execute("SELECT 7 AS n, 'ok' AS s, repeat('z', 5000) AS big, "
                       "[repeat('q', 500)] AS l, '\\x00\\xff'::BLOB AS b", max_rows=10)
    n, s, big, listed, blob = r.rows[0]
    assert (n, s, blob) == (7, "ok", "00ff")
    assert big == "z" * 100 + "…" and listed.endswith("…") and len(listed) == 101
    assert r.cells_cut == 2 and not r.truncated


def test_the_byte_budget_cuts_rows_and_says_so(db_file: Path) -> None:
    limits = ResultLimits(max_bytes=10_000, max_cell_bytes=1000)
    with DuckDBDatabase(db_file, limits=limits) as db:
        r = db.execute("SELECT repeat('a', 900) FROM range(100)", max_rows=100)
        assert r.truncated and r.cut_by == "bytes" and 0 < len(r.rows) < 100
        assert sum(len(row[0]) for row in r.rows) <= 10_000
        whole = db.execute("SELECT id FROM t ORDER BY id", max_rows=20)
        assert (len(whole.rows), whole.truncated, whole.cut_by) == (20, True, "rows")
        small = db.execute("SELECT id FROM t ORDER BY id", max_rows=100)
        assert (len(small.rows), small.truncated, small.cut_by) == (50, False, None)


def test_sqlite_results_have_the_same_byte_budget(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (s TEXT)")
    con.executemany("INSERT INTO t VALUES (?)", [("w" * 50_000,)] * 40)
    con.commit()
    con.close()
    db = open_database(f"sqlite:///{path}", limits=ResultLimits(max_bytes=100_000,
                                                                 max_cell_bytes=10_000))
    try:
        r = db.execute("SELECT s FROM t", max_rows=1000)
    finally:
        db.close()
    assert r.truncated and r.cut_by == "bytes" and r.cells_cut == len(r.rows) == 10
    assert all(row[0] == "w" * 10_000 + "…" for row in r.rows)


# --- time -------------------------------------------------------------------------------------
def test_the_watchdog_fires_in_deadline_order_and_never_after_disarm() -> None:
    dog = Watchdog()
    fired: list[str] = []
    last = threading.Event()
    early = dog.arm(0.01, lambda: fired.append("disarmed"))
    dog.disarm(early)
    first = dog.arm(0.02, lambda: fired.append("first"))
    dog.arm(0.05, lambda: (fired.append("second"), last.set()))
    assert last.wait(30)
    # the disarmed alarm was due before both: had it fired, it would come first
    assert fired == ["first", "second"] and first.fired and not early.fired


def test_a_timed_out_query_leaves_its_cursor_usable(db_file: Path) -> None:
    with DuckDBDatabase(db_file, timeout=0.2) as db:
        with pytest.raises(QueryTimeoutError):
            db.execute("SELECT count(*) FROM range(100000000000)", max_rows=10)
        assert db.execute("SELECT count(*) FROM t", max_rows=10).rows == [(50,)]
        with pytest.raises(QueryTimeoutError):  # and again: the alarm was for one query only
            db.execute("SELECT count(*) FROM range(100000000000)", max_rows=10)
        assert db.execute("SELECT 1", max_rows=10).rows == [(1,)]

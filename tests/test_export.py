"""TableChat.export_csv: a result's whole rows in a CSV file, past the row cap, through the same
guard and sandbox; and the CSV writer under it."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from langchain_core.language_models import FakeListChatModel

import tablechat
from tablechat.export import ExportTooLargeError, write_csv
from tablechat.sql.database import DuckDBDatabase, ResultLimits
from tests.support.sqlite_files import sqlite_file


def _read(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_an_answer_cut_at_the_row_cap_exports_whole(demo_db: Path, tmp_path: Path) -> None:
    model = FakeListChatModel(responses=["SELECT id, name FROM customers ORDER BY id",
                                         "Here they are."])
    with tablechat.connect(demo_db, llm=model, max_rows=10) as tc:
        answer = tc.ask("list every customer")
        assert len(answer.rows) == 10 and answer.truncated
        assert answer.sql.endswith("LIMIT 11")  # what ran
        assert answer.source_sql == "SELECT id, name FROM customers ORDER BY id"  # as written
        export = tc.export_csv(answer.source_sql, tmp_path / "all.csv")
    rows = _read(tmp_path / "all.csv")
    assert rows[0] == ["id", "name"] and len(rows) == 5001
    assert (export.rows, export.truncated, export.columns) == (5000, False, ["id", "name"])
    assert [r[0] for r in rows[1:11]] == [str(i) for i in range(1, 11)]


def test_the_export_cap_cuts_an_export_and_says_so(demo_db: Path, tmp_path: Path) -> None:
    with tablechat.connect(demo_db, max_rows=10, export_max_rows=25) as tc:
        export = tc.export_csv("SELECT id FROM customers ORDER BY id", tmp_path / "cut.csv")
        assert (export.rows, export.truncated) == (25, True)
        assert len(_read(tmp_path / "cut.csv")) == 26
        exact = tc.export_csv("SELECT id FROM customers ORDER BY id LIMIT 25", tmp_path / "x.csv")
        assert (exact.rows, exact.truncated) == (25, False)  # 25 rows asked, 25 given


def test_a_limit_of_the_query_s_own_is_kept(demo_db: Path, tmp_path: Path) -> None:
    with tablechat.connect(demo_db, max_rows=10) as tc:
        shown = tc.run_sql("SELECT id FROM customers ORDER BY id LIMIT 300")
        assert len(shown.rows) == 10 and shown.truncated and shown.source_sql.endswith("300")
        export = tc.export_csv(shown.source_sql, tmp_path / "300.csv")
    assert (export.rows, export.truncated) == (300, False)


@pytest.mark.parametrize(("sql", "error"), [
    ("DELETE FROM orders", tablechat.UnsafeSQLError),
    ("SELECT * FROM read_csv('/etc/passwd')", tablechat.UnsafeSQLError),
    ("SELECT nope FROM customers", tablechat.InvalidSQLError),
    ("SELECT CAST(name AS INTEGER) FROM customers", tablechat.SQLExecutionError),
])
def test_a_refused_or_failing_export_writes_no_file(
    demo_db: Path, tmp_path: Path, sql: str, error: type[Exception]
) -> None:
    target = tmp_path / "out.csv"
    target.write_text("an earlier export\n")
    with tablechat.connect(demo_db) as tc, pytest.raises(error):
        tc.export_csv(sql, target)
    assert target.read_text() == "an earlier export\n"  # neither replaced nor half-written
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no partial file left


def test_an_export_from_a_sqlite_file(tmp_path: Path) -> None:
    path = sqlite_file(tmp_path / "nums.sqlite", "CREATE TABLE nums(n INTEGER, t TEXT);" + "".join(
        f"INSERT INTO nums VALUES ({i}, 'n{i}');" for i in range(2500)))
    with tablechat.connect(f"sqlite:///{path}", max_rows=100) as tc:
        shown = tc.run_sql("SELECT n, t FROM nums ORDER BY n")
        assert shown.truncated
        export = tc.export_csv(shown.source_sql or "", tmp_path / "nums.csv")
    rows = _read(tmp_path / "nums.csv")
    assert export.rows == 2500 and rows[1] == ["0", "n0"] and rows[-1] == ["2499", "n2499"]


def test_an_export_sees_the_session_s_uploads_only(demo_db: Path, tmp_path: Path) -> None:
    data = "city,visits\n" + "".join(f"c{i},{i}\n" for i in range(40))
    with tablechat.connect(demo_db, max_rows=5) as tc:
        tc.upload("s1", "visits.csv", data.encode())
        export = tc.export_csv("SELECT city FROM visits", tmp_path / "v.csv", session="s1")
        assert export.rows == 40
        with pytest.raises(tablechat.InvalidSQLError, match="visits"):
            tc.export_csv("SELECT city FROM visits", tmp_path / "w.csv", session="s2")


def test_the_writer_formats_cells_and_stops_at_its_cap(tmp_path: Path) -> None:
    batches = [[(1, None, dt.date(2024, 1, 2))], [(2, "x", dt.datetime(2024, 1, 2, 3, 4))],
               [(3, "y", None)]]
    export = write_csv(tmp_path / "w.csv", ["n", "s", "d"], iter(batches), max_rows=3)
    assert (export.rows, export.truncated) == (3, False)  # as many rows as the cap: whole
    export = write_csv(tmp_path / "w.csv", ["n", "s", "d"], iter(batches), max_rows=2)
    assert (export.rows, export.truncated) == (2, True)  # a row more than the cap: cut
    assert _read(tmp_path / "w.csv") == [["n", "s", "d"], ["1", "", "2024-01-02"],
                                         ["2", "x", "2024-01-02T03:04:00"]]


def test_two_exports_to_one_path_never_mix(tmp_path: Path) -> None:
    import threading

    target = tmp_path / "same.csv"
    halfway, b_done = threading.Event(), threading.Event()

    def slow_batches() -> Iterator[list[tuple[str]]]:
        yield [("a1",)]
        halfway.set()
        b_done.wait(5)  # B writes its whole file meanwhile
        yield [("a2",)]

    outcome: list[object] = []
    a = threading.Thread(target=lambda: outcome.append(
        write_csv(target, ["x"], slow_batches())))
    a.start()
    assert halfway.wait(5)
    b = write_csv(target, ["x"], [[("b1",), ("b2",), ("b3",)]])
    assert _read(target) == [["x"], ["b1"], ["b2"], ["b3"]] and b.rows == 3
    b_done.set()
    a.join(5)
    assert _read(target) == [["x"], ["a1"], ["a2"]]  # A's whole file, then: never a mix
    assert [p.name for p in tmp_path.iterdir()] == ["same.csv"]


def test_export_batches_are_bounded_by_bytes_and_keep_cells_whole(tmp_path: Path) -> None:
    """An export is not cut per cell, so its batches are sized by bytes as well as rows: rows
    of 200 KB never come 10,000 at a time (2 GB), and small rows still come in large batches."""
    path = tmp_path / "e.duckdb"
    duckdb.connect(str(path)).close()
    budget = 1_000_000
    with DuckDBDatabase(path, limits=ResultLimits(max_bytes=budget)) as db:
        with db.batches("SELECT repeat('x', 200000) AS s FROM range(100)") as (_, batches):
            sizes = [[len(row[0]) for row in batch] for batch in batches]
        with db.batches("SELECT range AS n FROM range(100000)") as (_, batches):
            small = [len(batch) for batch in batches]
    assert sum(len(b) for b in sizes) == 100
    assert all(n == 200_000 for b in sizes for n in b)  # whole cells
    assert all(sum(b) <= budget for b in sizes[1:])  # after the first, within the budget
    assert max(small) == 10_000 and sum(small) == 100_000


def test_the_writer_stays_within_its_bytes_while_it_writes(tmp_path: Path) -> None:
    """``max_bytes`` holds at every moment, not only at the end: the file on disk never
    passes it, and an export that would is refused and leaves nothing."""
    seen: list[int] = []

    def batches() -> Iterator[list[tuple[str]]]:
        for n in range(50):
            # the disk as it is while the export runs (its part file included)
            seen.append(sum(p.stat().st_size for p in tmp_path.iterdir()))
            yield [(f"{n:03d}" + "x" * 96,)] * 10  # ~1 KB a batch

    with pytest.raises(ExportTooLargeError, match="more than 20,000 bytes") as refused:
        write_csv(tmp_path / "big.csv", ["s"], batches(), max_bytes=20_000)
    assert refused.value.max_bytes == 20_000
    assert 15 < len(seen) < 50 and max(seen) <= 20_000
    assert list(tmp_path.iterdir()) == [], "no file, no part file"
    # what fits is written whole, up to the byte
    whole = write_csv(tmp_path / "w.csv", ["s"], iter([[("a",), ("b",)]]), max_bytes=9)
    assert whole.rows == 2 and (tmp_path / "w.csv").read_bytes() == b"s\r\na\r\nb\r\n"
    with pytest.raises(ExportTooLargeError):
        write_csv(tmp_path / "w.csv", ["s"], iter([[("a",), ("bc",)]]), max_bytes=9)
    assert (tmp_path / "w.csv").read_bytes() == b"s\r\na\r\nb\r\n", "the older file is kept"


def test_an_export_past_its_bytes_is_refused_and_the_session_goes_on(demo_db: Path,
                                                                     tmp_path: Path) -> None:
    with tablechat.connect(demo_db, max_rows=10) as tc:
        sql = "SELECT id, name FROM customers ORDER BY id"
        with pytest.raises(ExportTooLargeError):
            tc.export_csv(sql, tmp_path / "all.csv", max_bytes=10_000)
        assert list(tmp_path.iterdir()) == []
        export = tc.export_csv(sql, tmp_path / "all.csv", max_bytes=10_000_000)
        assert export.rows == 5000 and (tmp_path / "all.csv").stat().st_size < 10_000_000

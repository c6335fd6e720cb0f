"""Issue 11, class 6: a wide upload cost one sample query per column, each scanning the whole
registered DataFrame (400 columns: 35 s; 3,000 columns: over 5 minutes at 100 % CPU). Now the
column count is capped, and the sample queries of a table are one statement per 32 text
columns, over a table in DuckDB's own storage."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import duckdb
import pytest

import tablechat
from tablechat import UploadError
from tablechat.sql.database import DuckDBDatabase
from tablechat.sql.duckdb_db import SAMPLE_BATCH
from tablechat.sql.schema import Column, TableInfo
from tablechat.uploads import UploadLimits


def _wide(path: Path, columns: int, rows: int = 3) -> Path:
    cols = ", ".join(f"'v' || (range % 4) || '_{i}' AS c{i}" for i in range(columns))
    con = duckdb.connect()
    try:
        con.execute(f"COPY (SELECT {cols} FROM range({rows})) TO '{path}' (FORMAT parquet)")
    finally:
        con.close()
    return path


class CountingCursor:
    """A real DuckDB cursor that counts the statements run through it."""

    def __init__(self, cur: duckdb.DuckDBPyConnection) -> None:
        self.cur = cur
        self.statements: list[str] = []

    def execute(self, sql: str, *args: Any) -> Any:
        self.statements.append(sql)
        return self.cur.execute(sql, *args)


def test_a_3000_column_parquet_is_refused_by_the_column_cap(
        demo_db: Path, tmp_path: Path) -> None:
    wide = _wide(tmp_path / "wide.parquet", 3000)
    with tablechat.connect(demo_db) as tc:
        with pytest.raises(UploadError, match=r"3,000 columns; uploads may have at most 500"):
            tc.upload("s1", "wide.parquet", wide)
        assert tc.database.session_tables("s1") == []


def test_the_cap_is_a_setting(tmp_path: Path) -> None:
    from tablechat.uploads import read_upload

    wide = _wide(tmp_path / "w.parquet", 40)
    with pytest.raises(UploadError, match="40 columns"):
        read_upload("w.parquet", wide, max_mb=50, limits=UploadLimits(max_columns=39))
    assert read_upload("w.parquet", wide, max_mb=50).shape == (3, 40)


def test_samples_of_a_wide_table_take_one_statement_per_batch_of_columns(
        demo_db: Path, tmp_path: Path) -> None:
    columns = 500  # the cap: the widest upload accepted
    wide = _wide(tmp_path / "wide.parquet", columns, rows=2000)
    with tablechat.connect(demo_db) as tc:
        info = tc.upload("s1", "wide.parquet", wide)
        assert len(info.columns) == columns and info.row_count == 2000
        assert all(c.samples == [f"v{k}_{i}" for k in range(4)]
                   for i, c in enumerate(info.columns))
        db = tc.database
        assert isinstance(db, DuckDBDatabase)
        counting = CountingCursor(db.cursor("s1"))
        fresh = TableInfo("wide", [Column(c.name, c.type) for c in info.columns])
        ran = db.add_samples(counting, fresh)
    assert ran == len(counting.statements) == math.ceil(columns / SAMPLE_BATCH) == 16
    assert [c.samples for c in fresh.columns] == [c.samples for c in info.columns]


def test_a_column_that_cannot_be_sampled_spoils_no_other(tmp_path: Path) -> None:
    path = tmp_path / "t.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t AS SELECT 'a' AS x, 'b' AS y")
    con.close()
    with DuckDBDatabase(path) as db:
        table = TableInfo("t", [Column("x", "VARCHAR"), Column("gone", "VARCHAR"),
                                Column("y", "VARCHAR")])
        counting = CountingCursor(db.cursor())
        assert db.add_samples(counting, table) == 4  # the batch, then each column alone
    assert [c.samples for c in table.columns] == [["a"], [], ["b"]]


def test_uploads_live_in_the_session_s_own_temporary_tables(demo_db: Path,
                                                            tmp_path: Path) -> None:
    ok = _wide(tmp_path / "mine.parquet", 3)
    with tablechat.connect(demo_db) as tc:
        tc.upload("s1", "mine.parquet", ok)
        assert tc.run_sql("SELECT count(*) FROM mine", session="s1").rows == [(3,)]
        db = tc.database
        assert isinstance(db, DuckDBDatabase)
        mine = db.cursor("s1").execute(
            "SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()
        assert mine == [("mine",)]
        for other in (db.cursor("s2"), db.cursor()):  # another session, a thread's cursor
            with pytest.raises(duckdb.CatalogException):
                other.execute("SELECT * FROM mine")


def test_a_csv_header_of_100000_columns_is_refused_before_duckdb_sniffs_it() -> None:
    from tablechat.uploads import read_upload

    header = ",".join(f"c{i}" for i in range(100_000)).encode()
    data = header + b"\n" + b",".join(b"1" for _ in range(100_000)) + b"\n"
    with pytest.raises(UploadError, match=r"wide.csv has 100,000 columns; uploads may have at "
                                          r"most 500"):
        read_upload("wide.csv", data, max_mb=50)
    # commas inside quotes and another delimiter: a narrow file, loaded
    narrow = b'a;"b, with, commas, ' + b", " * 600 + b'"\n1;2\n'
    assert read_upload("narrow.csv", narrow, max_mb=50).shape == (1, 2)

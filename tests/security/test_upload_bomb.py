"""Issue 11, class 4: a small upload that decompresses into a huge table is refused before
anything is loaded, with a clear one-line reason and bounded memory. The bombs are built here
with DuckDB's COPY."""

from __future__ import annotations

import gzip
from pathlib import Path

import duckdb
import pytest

import tablechat
from tablechat import UploadError
from tablechat.uploads import UploadLimits, read_upload
from tests.security.peak_rss import PEAK, run_child

# the child's baseline (Python, DuckDB, pandas, sqlglot) is ~150 MB; the 300M-row bomb took the
# server from 1.2 to 8.1 GB
BUDGET_MB = 512


def _copy(path: Path, select: str, options: str = "FORMAT parquet") -> Path:
    con = duckdb.connect()
    try:
        con.execute(f"COPY ({select}) TO '{path}' ({options})")
    finally:
        con.close()
    return path


def _refusal(name: str, path: Path, **limits: object) -> str:
    with pytest.raises(UploadError) as caught:
        read_upload(name, path, max_mb=50, limits=UploadLimits(**limits))  # type: ignore[arg-type]
    text = str(caught.value)
    assert "\n" not in text and name in text and len(text) < 300
    return text


def test_the_parquet_bomb_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    """The measured bomb: a ~0.5 MB Parquet file of 300M constant BIGINTs."""
    bomb = _copy(tmp_path / "bomb.parquet", "SELECT 7::BIGINT AS v FROM range(300000000)")
    assert bomb.stat().st_size < 1_000_000
    run = run_child(PEAK + f"""
from tablechat import UploadError
from tablechat.uploads import read_upload
try:
    read_upload("bomb.parquet", {str(bomb)!r}, max_mb=50)
    refused = ""
except UploadError as exc:
    refused = str(exc)
report(refused=refused)
""")
    print(f"parquet bomb: refused in {run.elapsed_s:.2f} s, peak {run.peak_mb:.0f} MB")
    assert "300,000,000 rows" in run.out["refused"] and "cells" in run.out["refused"]
    assert run.peak_mb < BUDGET_MB


def test_the_bomb_is_refused_by_the_core_and_the_session_holds_nothing(
        demo_db: Path, tmp_path: Path) -> None:
    bomb = _copy(tmp_path / "bomb.parquet", "SELECT 7::BIGINT AS v FROM range(50000000)")
    with tablechat.connect(demo_db) as tc:
        with pytest.raises(UploadError, match="cells"):
            tc.upload("s1", "bomb.parquet", bomb)
        assert tc.database.session_tables("s1") == []


def test_text_that_decompresses_past_the_memory_bound_is_refused(tmp_path: Path) -> None:
    """A dictionary-encoded 1 KB string a million times: 11 KB on disk, ~1 GB in memory."""
    bomb = _copy(tmp_path / "text.parquet", "SELECT repeat('x', 1000) AS s FROM range(1000000)")
    assert bomb.stat().st_size < 100_000
    text = _refusal("text.parquet", bomb)
    assert "MB of memory" in text


def test_a_table_within_the_bounds_is_loaded(tmp_path: Path) -> None:
    ok = _copy(tmp_path / "ok.parquet", "SELECT range AS id, 'n' || range AS s FROM range(1000)")
    frame = read_upload("ok.parquet", ok, max_mb=50)
    assert frame.shape == (1000, 2)
    # the same file under tighter limits: each bound refuses it on its own
    assert "cells" in _refusal("ok.parquet", ok, max_cells=1999)
    assert "columns" in _refusal("ok.parquet", ok, max_columns=1)
    assert "memory" in _refusal("ok.parquet", ok, max_memory_bytes=10_000)


def test_csv_bombs_are_refused(tmp_path: Path) -> None:
    csv_gz = _copy(tmp_path / "rows.csv.gz", "SELECT range AS a, 'text' AS b FROM range(100000)",
                   "FORMAT csv, COMPRESSION gzip")
    assert "unsupported file type" in _refusal("rows.csv.gz", csv_gz)
    # the same gzip bytes under a .csv name: not text, so not read (DuckDB would inflate it)
    disguised = tmp_path / "rows.csv"
    disguised.write_bytes(csv_gz.read_bytes())
    assert "binary data" in _refusal("rows.csv", disguised)
    many = _copy(tmp_path / "many.csv", "SELECT 1 AS a, 2 AS b FROM range(6000000)",
                 "FORMAT csv")
    assert "cells" in _refusal("many.csv", many)


@pytest.mark.parametrize("name", ["long.csv", "long.jsonl"])
def test_a_long_line_is_refused_before_duckdb_reads_it(tmp_path: Path, name: str) -> None:
    """One 20 MB line: DuckDB refused it only after copying it into its error message (8 s);
    a JSON Lines file gets the same check."""
    path = tmp_path / name
    if name.endswith(".csv"):
        path.write_bytes(b"s\n" + b"x" * 20_000_000 + b"\n")
    else:
        path.write_bytes(b'{"s": "' + b"x" * 20_000_000 + b'"}\n')
    assert "line of 20,000,0" in _refusal(name, path)


def test_a_gzip_member_inside_json_is_just_text(tmp_path: Path) -> None:
    """A .json upload is read as text: compressed bytes in it are refused as binary."""
    path = tmp_path / "x.json"
    path.write_bytes(gzip.compress(b'[{"a": 1}]' * 1000))
    assert "binary data" in _refusal("x.json", path)


def test_reading_an_upload_is_bounded_by_the_timeout(tmp_path: Path) -> None:
    """Reading had no time bound at all: the watchdog interrupts it."""
    big = _copy(tmp_path / "big.csv", "SELECT range AS a, range * 2 AS b FROM range(2000000)",
                "FORMAT csv")
    assert "took longer than" in _refusal("big.csv", big, timeout=0.001)


def test_an_upload_the_sandbox_cannot_hold_is_a_clear_refusal(tmp_path: Path) -> None:
    """Uploads live in the sandbox's storage, under its memory limit and temporary directory
    cap; a table that does not fit is the person's error, not a crash."""
    import pandas as pd

    from tablechat.sql.database import DuckDBDatabase

    path = tmp_path / "small.duckdb"
    duckdb.connect(str(path)).close()
    frame = pd.DataFrame({"s": [f"row {i} " + "x" * 200 for i in range(200_000)]})
    with DuckDBDatabase(path, memory_limit="16MB", max_temp_directory_size="1MB") as db:
        with pytest.raises(UploadError, match="cannot load big into the database") as caught:
            db.register_table("s1", "big", frame)
        assert "\n" not in str(caught.value)
        assert db.session_tables("s1") == []
        assert db.execute("SELECT 1", max_rows=1, session="s1").rows == [(1,)]

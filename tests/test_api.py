"""The Python API contract and the CLI, including bad input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.language_models import FakeListChatModel

import tablechat
from tablechat.cli import main
from tests.support.sqlite_files import sqlite_file

ROOT = Path(__file__).resolve().parents[1]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_public_api_is_thin_and_complete() -> None:
    for name in ("connect", "TableChat", "Answer", "TableChatError", "UnsafeSQLError"):
        assert name in tablechat.__all__
    assert issubclass(tablechat.UnsafeSQLError, tablechat.TableChatError)
    for cls in (
        tablechat.BadQuestionError,
        tablechat.LLMUnavailableError,
        tablechat.ConfigurationError,
        tablechat.QueryTimeoutError,
    ):
        assert issubclass(cls, tablechat.TableChatError)


def test_answer_has_the_documented_fields(demo_db: Path) -> None:
    tc = tablechat.connect(
        demo_db,
        llm=FakeListChatModel(
            responses=["SELECT name FROM regions ORDER BY id LIMIT 2", "Europe and North America."]
        ),
    )
    a = tc.ask("first two regions")
    assert (a.question, a.sql, a.columns, a.rows, a.text, a.engine, a.error) == (
        "first two regions",
        "SELECT name FROM regions ORDER BY id LIMIT 2",
        ["name"],
        [("Europe",), ("North America",)],
        "Europe and North America.",
        "llm",
        None,
    )
    assert a.df.to_dict("list") == {"name": ["Europe", "North America"]}
    assert a.chart is None  # a list of names has nothing to plot


@pytest.mark.parametrize("question", ["", "   \n\t", "x" * 100_000])
def test_bad_questions_raise_clear_errors_and_change_nothing(demo_db: Path, question: str) -> None:
    before = _digest(demo_db)
    model = FakeListChatModel(responses=["SELECT 1"])
    tc = tablechat.connect(demo_db, llm=model)
    with pytest.raises(tablechat.BadQuestionError, match=r"empty|too long"):
        tc.ask(question)
    assert model.i == 0, "the model was not called"
    assert _digest(demo_db) == before
    assert tc.run_sql("SELECT count(*) FROM regions").rows == [(5,)]


def test_unreachable_database_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.duckdb"
    with pytest.raises(tablechat.DatabaseUnavailableError, match="not found"):
        tablechat.connect(missing)
    assert not missing.exists(), "connect must not create a database"


def test_a_corrupt_database_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(tablechat.DatabaseUnavailableError, match="cannot open"):
        tablechat.connect(bad)
    assert bad.read_bytes() == b"this is not a database" * 100


def test_bad_database_url_is_a_configuration_error() -> None:
    with pytest.raises(tablechat.ConfigurationError):
        tablechat.connect("nosuchdriver://x/y")


def test_run_sql_refuses_unsafe_sql(demo_db: Path) -> None:
    tc = tablechat.connect(demo_db)
    with pytest.raises(tablechat.UnsafeSQLError):
        tc.run_sql("DELETE FROM orders")
    with pytest.raises(tablechat.InvalidSQLError):
        tc.run_sql("SELECT nope FROM orders")
    a = tc.run_sql("SELECT count(*) AS n FROM orders")
    assert a.rows == [(40000,)] and a.engine == "sql"


def test_max_rows_setting_caps_results(demo_db: Path) -> None:
    tc = tablechat.connect(demo_db, max_rows=7)
    a = tc.run_sql("SELECT id FROM customers")
    # the guard asks for one row more than the cap, only to tell that the result was cut
    assert len(a.rows) == 7 and a.sql.endswith("LIMIT 8") and a.truncated
    whole = tc.run_sql("SELECT id FROM customers ORDER BY id LIMIT 7")
    assert len(whole.rows) == 7 and not whole.truncated
    short = tc.run_sql("SELECT name FROM regions LIMIT 3")
    assert len(short.rows) == 3 and not short.truncated


def test_truncation_is_told_on_a_sqlalchemy_database(tmp_path: Path) -> None:
    path = sqlite_file(
        tmp_path / "nums.sqlite",
        "CREATE TABLE nums(n INTEGER);" + "".join(f"INSERT INTO nums VALUES ({i});"
                                                  for i in range(5)),
    )
    cut = tablechat.connect(f"sqlite:///{path}", max_rows=3)
    whole = tablechat.connect(f"sqlite:///{path}", max_rows=5)
    try:
        a = cut.run_sql("SELECT n FROM nums ORDER BY n")
        assert a.rows == [(0,), (1,), (2,)] and a.truncated
        b = whole.run_sql("SELECT n FROM nums ORDER BY n")
        assert len(b.rows) == 5 and not b.truncated
    finally:
        cut.close()
        whole.close()


def test_llm_must_be_url_or_chat_model(demo_db: Path) -> None:
    with pytest.raises(tablechat.ConfigurationError):
        tablechat.connect(demo_db, llm=42)  # type: ignore[arg-type]


def test_sqlalchemy_url_works_end_to_end(tmp_path: Path) -> None:
    path = sqlite_file(
        tmp_path / "pets.sqlite",
        "CREATE TABLE pets(id INTEGER PRIMARY KEY, kind TEXT, age INTEGER);"
        "INSERT INTO pets VALUES (1,'cat',3),(2,'dog',5),(3,'cat',1);",
    )
    tc = tablechat.connect(
        f"sqlite:///{path}",
        llm=FakeListChatModel(
            responses=[
                # a SQLite habit (double-quoted string) the guard repairs for the target dialect
                'SELECT kind, count(*) AS n FROM pets WHERE kind = "cat" GROUP BY kind',
                "Two cats.",
            ]
        ),
    )
    a = tc.ask("how many cats?")
    assert a.error is None and a.rows == [("cat", 2)]
    tc.close()


# --- CLI -------------------------------------------------------------------------------------
def test_cli_ask_json_prints_the_documented_shape(demo_db: Path, capsys) -> None:
    code = main(["ask", "how many customers", "--database", str(demo_db), "--json"])
    out, err = capsys.readouterr()
    data = json.loads(out.strip().splitlines()[-1])
    assert {"question", "sql", "columns", "rows", "text", "engine"} <= data.keys()
    assert data["question"] == "how many customers"
    assert data["engine"] == "offline"
    assert code in (0, 1)
    assert "reading schema" in err  # progress goes to stderr, never stdout


def test_cli_ask_writes_the_whole_result_to_a_csv(demo_db: Path, tmp_path: Path,
                                                  capsys) -> None:
    target = tmp_path / "customers.csv"
    code = main(["ask", "List every customer", "--database", str(demo_db), "--max-rows", "20",
                 "--csv", str(target)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert len(out.strip().splitlines()) >= 22  # header, rule and the 20 rows printed
    assert f"wrote 5,000 rows to {target}" in err
    assert len(target.read_text().splitlines()) == 5001  # the whole result, past --max-rows
    small = tmp_path / "regions.csv"
    assert main(["ask", "How many regions are there?", "--database", str(demo_db),
                 "--csv", str(small)]) == 0
    assert small.read_text().splitlines()[1:] == ["5"]
    capsys.readouterr()
    nowhere = tmp_path / "missing-dir-is-a-file"
    nowhere.write_text("")
    assert main(["ask", "List every customer", "--database", str(demo_db), "--max-rows", "20",
                 "--csv", str(nowhere / "c.csv")]) == 1
    _, err = capsys.readouterr()
    assert "the CSV export failed" in err and "Traceback" not in err


def test_cli_ask_empty_question_exits_nonzero(demo_db: Path, capsys) -> None:
    code = main(["ask", "  ", "--database", str(demo_db)])
    _, err = capsys.readouterr()
    assert code == 1 and "empty" in err


def test_cli_missing_database_is_a_clear_error(tmp_path: Path, capsys) -> None:
    code = main(["ask", "hi", "--database", str(tmp_path / "missing.duckdb")])
    _, err = capsys.readouterr()
    assert code == 1 and "not found" in err and "Traceback" not in err


def test_cli_demo_builds_a_database(tmp_path: Path, capsys) -> None:
    target = tmp_path / "demo.duckdb"
    assert main(["demo", "--path", str(target)]) == 0
    tc = tablechat.connect(target)
    assert tc.run_sql("SELECT count(*) FROM regions").rows == [(5,)]
    tc.close()


def test_console_script_runs_from_another_folder(tmp_path: Path, demo_db: Path) -> None:
    exe = Path(sys.executable).with_name("tablechat")
    proc = subprocess.run(
        [str(exe), "ask", "how many orders", "--db", str(demo_db), "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.strip(), proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["question"] == "how many orders"
    assert "Traceback" not in proc.stderr


def test_no_command_prints_help(capsys) -> None:
    assert main([]) == 2
    assert "serve" in capsys.readouterr().out

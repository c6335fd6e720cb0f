"""The web front end's logic without a browser: chat handlers, results, charts, schema browser,
examples, uploads in the core, metrics."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest

import tablechat
from tablechat import events as ev
from tablechat.errors import UploadError
from tablechat.export import Export
from tablechat.sql.schema import Column, SchemaSnapshot, TableInfo
from tablechat.web import browse, chat
from tablechat.web.metrics import Metrics
from tablechat.web.results import PAGE_SIZE, Result, chart_view, pretty_sql
from tests.test_web_support import ScriptedChatModel


@pytest.fixture(scope="module")
def tc(demo_db: Path) -> tablechat.TableChat:
    return tablechat.connect(demo_db, llm=ScriptedChatModel())


def run(tc: tablechat.TableChat, question: str, conv: list[chat.Turn] | None = None,
        session: str = "s1", metrics: Metrics | None = None) -> list[chat.Update]:
    async def collect() -> list[chat.Update]:
        return [u async for u in chat.ask(tc, question, conv or [], session=session,
                                           metrics=metrics)]
    return asyncio.run(collect())


# --- chat -----------------------------------------------------------------------------------
def test_a_question_streams_steps_sql_table_chart_and_answer(tc: tablechat.TableChat) -> None:
    updates = run(tc, "Revenue by region")
    first, last = updates[0], updates[-1]
    assert first.conv[-2] == {"role": "user", "content": "Revenue by region"}
    assert first.conv[-1]["pending"] and not first.done
    steps = [m for m in chat.messages(first.conv) if m.get("metadata")]
    assert steps[0]["content"] == "- reading schema", "the first step shows while it runs"
    assert steps[0]["metadata"] == {"title": "reading schema…", "status": "pending"}
    shown = next(u for u in updates if u.sql).sql
    assert shown.startswith("SELECT\n  r.name AS region"), "laid out for reading"
    assert "LIMIT" not in shown, "the guard's row cap (LIMIT 1001) is not shown"
    result = next(u.result for u in updates if u.result is not None and u.result.chart)
    assert result.columns == ["region", "revenue"] and len(result.rows) == 5
    assert result.chart == {"type": "bar", "x": "region", "y": "revenue", "color": None,
                            "title": "revenue by region"}
    assert last.done and not last.conv[-1]["pending"]
    turn = last.conv[-1]
    assert turn["content"] == "Europe brings the most revenue."
    assert turn["sql"].startswith("SELECT r.name") and turn["rows"] == 5
    assert turn["engine"] == "LLM (ScriptedChatModel)"
    msgs = chat.messages(last.conv)
    assert msgs[1]["metadata"]["status"] == "done" and "running the query" in msgs[1]["content"]
    assert "answered by LLM (ScriptedChatModel)" in msgs[2]["content"]
    # the work inside the message: SQL, table and chart, each collapsible
    work = msgs[2]["content"]
    assert '<details class="tc-work tc-work-sql"><summary>SQL</summary>' in work
    assert "```sql\nSELECT\n  r.name AS region" in work and "LIMIT 1001" not in work
    assert "<summary>Table · 5 rows</summary>" in work
    assert '<td class="num">$4,751,697.72</td>' in work, "the metric's currency, separators"
    assert "<svg" in work and ">Europe</text>" in work
    assert turn["result"].rows == result.rows, "each answer keeps its own result"


def test_the_retry_step_names_the_column_that_was_not_found(tc: tablechat.TableChat) -> None:
    last = run(tc, "Customers per segmnt")[-1]
    steps = last.conv[-1]["steps"]
    assert any(s.startswith("retrying:") and "segmnt" in s for s in steps), steps
    assert last.conv[-1]["sql"].startswith("SELECT segment")


def test_earlier_updates_are_not_changed_by_later_ones(tc: tablechat.TableChat) -> None:
    updates = run(tc, "Revenue by region")
    assert updates[0].conv[-1]["steps"] == ["reading schema"]
    assert updates[0].conv[-1]["content"] == ""


def test_follow_ups_carry_the_previous_sql(tc: tablechat.TableChat) -> None:
    conv = run(tc, "Revenue by region")[-1].conv
    assert chat.history_of(conv)[-1]["sql"].startswith("SELECT r.name AS region")
    last = run(tc, "Only Europe", conv)[-1]
    result = Result("", [], [])
    assert last.conv[-1]["sql"] and "WHERE r.name = 'Europe'" in last.conv[-1]["sql"], result
    assert len(last.conv) == 4


@pytest.mark.parametrize("question", ["", "   ", "x" * 100_000])
def test_bad_questions_leave_the_conversation_alone(tc: tablechat.TableChat,
                                                    question: str) -> None:
    metrics = Metrics()
    updates = run(tc, question, [{"role": "user", "content": "hi"}], metrics=metrics)
    assert len(updates) == 1
    assert updates[0].notice and ("empty" in updates[0].notice or "too long" in updates[0].notice)
    assert updates[0].conv == [{"role": "user", "content": "hi"}]
    assert metrics.value("tablechat_bad_requests_total", front="ui") == 1


def test_stop_undo_and_regenerate_are_list_operations() -> None:
    conv: list[chat.Turn] = [
        {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1", "sql": "S1"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "", "pending": True, "steps": ["writing SQL"]},
    ]
    stopped = chat.stop(conv)
    assert stopped[-1]["stopped"] and not stopped[-1]["pending"]
    assert conv[-1]["pending"], "stop copies"
    assert chat.STOPPED in chat.messages(stopped)[-1]["content"]
    assert chat.history_of(conv) == [{"role": "user", "content": "q1", "sql": None},
                                     {"role": "assistant", "content": "a1", "sql": "S1"},
                                     {"role": "user", "content": "q2", "sql": None}]
    assert chat.history_of(stopped) == chat.history_of(conv[:2]), "stopped: no context"
    assert chat.last_question(stopped) == ("q2", conv[:2])
    assert chat.undo(stopped) == ("q2", conv[:2])
    assert chat.undo([]) == ("", [])


def test_an_sql_run_joins_the_conversation_for_follow_ups() -> None:
    result = Result("SELECT 1 AS x LIMIT 1000", ["x"], [(1,)])
    conv = chat.record_sql_run([], "SELECT 1 AS x", result, None)
    assert chat.history_of(conv)[-1]["sql"] == "SELECT 1 AS x LIMIT 1000"
    assert "Ran the edited SQL" in chat.messages(conv)[0]["content"]
    assert chat.last_question(conv) == (None, conv), "regenerate skips SQL runs"
    assert chat.undo(conv) == ("", [])
    failed = chat.record_sql_run([], "DROP TABLE x", None, "UnsafeSQL: refused")
    assert "UnsafeSQL: refused" in chat.messages(failed)[-1]["content"]


# --- results and charts ---------------------------------------------------------------------
def test_pages_say_what_they_show(tmp_path: Path) -> None:
    rows = [(i, f"name {i}") for i in range(120)]
    result = Result("SELECT ...", ["id", "name"], rows, truncated=True)
    frame, info, page = result.page(0)
    assert len(frame) == PAGE_SIZE and page == 0
    assert info.startswith("Showing rows 1–50 of 120") and "row cap" in info
    assert "row cap" in Result("", ["a"], [(1,)] * 10, truncated=True).info()
    assert "row cap" not in Result("", ["a"], [(1,)] * 10).info()  # exactly the cap, not cut
    frame, info, page = result.page(99)
    assert page == 2 and len(frame) == 20 and "rows 101–120 of 120" in info
    assert Result("", ["a"], [(1,)]).info() == "1 row"
    assert Result("", ["a"], []).info() == "The query returned no rows."
    path = result.write_csv(tmp_path / "s" / "result.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "id,name" and len(lines) == 121, "the CSV holds every row, not a page"


def test_a_cut_result_says_what_its_export_found() -> None:
    rows = [(i,) for i in range(10)]
    counted = Result("", ["a"], rows, truncated=True,
                     exported=Export(Path("all.csv"), ["a"], 48213, False))
    assert "the query found 48,213 rows; the CSV has all 48,213" in counted.info()
    capped = Result("", ["a"], rows, truncated=True,
                    exported=Export(Path("first.csv"), ["a"], 100, True))
    assert "found 100 or more rows; the CSV has the first 100" in capped.info()
    failed = Result("", ["a"], rows, truncated=True, export_error="the query ran too long")
    assert "exporting all rows failed: the query ran too long" in failed.info()
    assert not failed.exportable  # no query at hand to run again
    assert Result("", ["a"], rows, truncated=True, source="SELECT a FROM t").exportable
    assert not counted.exportable  # exported already


def test_csv_writes_dates_and_nulls_plainly(tmp_path: Path) -> None:
    result = Result("", ["d", "v"], [(dt.date(2024, 1, 2), None)])
    assert result.write_csv(tmp_path / "r.csv").read_text().splitlines() == ["d,v", "2024-01-02,"]


def test_duplicate_column_names_still_make_a_table() -> None:
    frame, _, _ = Result("", ["n", "n"], [(1, 2)]).page(0)
    assert list(frame.columns) == ["n", "n_2"]


@pytest.mark.parametrize(("columns", "rows", "kind", "shape"), [
    (["customers"], [(5000,)], "number", ""),
    (["region", "revenue"], [("Europe", 10.0), ("Asia", 5.0)], "chart", "<rect"),
    (["month", "orders"], [(dt.date(2024, 1, 1), 3), (dt.date(2024, 2, 1), 4)], "chart",
     "<polyline"),
    (["price", "cost"], [(1.0, 2.0), (3.0, 1.0), (2.0, 2.5)], "chart", "<circle"),
    (["name"], [("a",), ("b",)], "none", ""),
])
def test_chart_views_follow_the_spec(columns: list[str], rows: list[Any], kind: str,
                                     shape: str) -> None:
    view = chart_view(Result("", columns, rows))
    assert view.kind == kind
    if kind == "number":
        assert "5,000" in view.markdown and "customers" in view.markdown
    elif kind == "chart":
        assert view.html.count("<svg") == 1 and shape in view.html
        assert "undefined" not in view.html and "NaN" not in view.html
        # both axes (or the bars' measure) are named after the columns
        assert f">{columns[1]}</text>" in view.html


def test_a_spec_naming_unknown_columns_draws_nothing() -> None:
    bad = {"type": "bar", "x": "nope", "y": "revenue"}
    assert chart_view(Result("", ["a", "b"], [("x", 1)], chart=bad)).kind == "none"
    assert chart_view(None).kind == "none"


def test_sql_is_laid_out_for_the_editor() -> None:
    assert pretty_sql("select a, b from t where a > 1", "duckdb").count("\n") >= 2
    assert pretty_sql("not sql at all (", "duckdb") == "not sql at all ("


# --- schema browser and examples ------------------------------------------------------------
def test_schema_browser_shows_descriptions_types_and_samples(tc: tablechat.TableChat) -> None:
    snap = tc.snapshot()
    tables = browse.tables_frame(snap)
    assert set(tables["table"]) >= {"customers", "orders", "regions"}
    row = tables[tables["table"] == "customers"].iloc[0]
    assert row["rows"] == 5000 and row["source"] == "database" and row["description"]
    cols = browse.columns_frame(snap, "customers")
    seg = cols[cols["column"] == "segment"].iloc[0]
    assert seg["type"] == "VARCHAR" and "Corporate" in seg["sample values"]
    assert "segment" in seg["description"].lower()
    assert cols[cols["column"] == "id"].iloc[0]["key"] == "primary key"
    assert "5,000 rows" in browse.table_summary(snap, "customers")
    assert browse.columns_frame(snap, "nope").empty


def test_demo_examples_start_with_an_offline_answerable_question(
        tc: tablechat.TableChat) -> None:
    examples = browse.example_questions(tc)
    assert examples[0] == "How many customers are there?"


def test_other_databases_get_examples_from_their_schema() -> None:
    snap = SchemaSnapshot("duckdb", {
        "pets": TableInfo("pets", [Column("id", "INTEGER", primary_key=True),
                                   Column("species", "VARCHAR", samples=["cat", "dog"]),
                                   Column("weight", "DOUBLE")], 10),
        "owners": TableInfo("owners", [Column("name", "VARCHAR", samples=["Ann"])], 3),
    })
    examples = browse.schema_examples(snap)
    assert examples[0] == "How many pets are there?"
    assert "Total weight by species in pets" in examples
    assert "Top 5 pets by weight" in examples
    assert browse.schema_examples(SchemaSnapshot("duckdb", {})) == []


# --- uploads in the core --------------------------------------------------------------------
def test_uploads_are_per_session_and_queryable(demo_db: Path) -> None:
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel())
    info = tc.upload("a", "My Pets.csv", b"name,age\nrex,3\nfido,5\ntom,4\n")
    assert (info.name, info.row_count, [c.name for c in info.columns]) == (
        "my_pets", 3, ["name", "age"])
    assert tc.run_sql("SELECT avg(age) FROM my_pets", session="a").rows == [(4.0,)]
    assert "my_pets" in tc.snapshot("a").tables and "my_pets" not in tc.snapshot("b").tables
    with pytest.raises(tablechat.TableChatError, match="my_pets"):
        tc.run_sql("SELECT * FROM my_pets", session="b")
    # a second upload after a query in the same session, and a name the database has
    assert tc.upload("a", "customers.csv", b"x\n1\n").name == "customers_upload"
    assert tc.upload("a", "select.json", b'[{"a": 1}]').name == "select_table"
    tc.end_session("a")
    assert "my_pets" not in tc.snapshot("a").tables


@pytest.mark.parametrize(("name", "data", "message"), [
    ("random.csv", bytes(range(256)) * 40, "binary data"),
    ("photo.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(500), "binary data"),
    ("fake.parquet", b"name,age\nrex,3\n", "not a Parquet file"),
    ("broken.json", b'{"a": 1, "b": ', "cannot read broken.json as JSON"),
    ("empty.csv", b"  \n", "empty"),
    ("sheet.xlsx", b"PK\x03\x04", "unsupported file type"),
])
def test_malformed_uploads_are_refused_clearly(demo_db: Path, name: str, data: bytes,
                                               message: str) -> None:
    tc = tablechat.connect(demo_db)
    with pytest.raises(UploadError, match=message) as info:
        tc.upload("s", name, data)
    assert "/tmp" not in str(info.value), "no server paths in messages"
    assert tc.snapshot("s").tables.keys() == tc.snapshot().tables.keys()


def test_uploads_over_the_cap_are_refused(demo_db: Path, tmp_path: Path) -> None:
    tc = tablechat.connect(demo_db, upload_max_mb=0.01)
    big = b"n\n" + b"1234567890\n" * 2000
    with pytest.raises(UploadError, match=r"limit is 0\.01 MB"):
        tc.upload("s", "big.csv", big)
    path = tmp_path / "big.csv"
    path.write_bytes(big)
    with pytest.raises(UploadError, match=r"limit is 0\.01 MB"):
        tc.upload("s", "big.csv", path)


def test_an_upload_never_writes_the_database(demo_db: Path) -> None:
    before = hashlib.sha256(demo_db.read_bytes()).hexdigest()
    tc = tablechat.connect(demo_db)
    tc.upload("s", "t.csv", b"a\n1\n")
    tc.close()
    assert hashlib.sha256(demo_db.read_bytes()).hexdigest() == before


# --- metrics --------------------------------------------------------------------------------
def test_metrics_count_questions_engines_retries_and_latency(tc: tablechat.TableChat) -> None:
    metrics = Metrics()
    run(tc, "Customers per segmnt", metrics=metrics)
    run(tc, "Revenue by region", metrics=metrics)
    r = metrics
    assert r.value("tablechat_questions_total", front="ui", engine="llm", outcome="ok") == 2
    assert r.value("tablechat_sql_retries_total", front="ui") == 1
    text = metrics.render()
    assert 'tablechat_question_seconds_count{front="ui"} 2.0' in text
    assert 'tablechat_question_seconds_bucket{front="ui",le="+Inf"} 2.0' in text
    assert "# TYPE tablechat_question_seconds histogram" in text
    assert "tablechat_questions_in_flight 0.0" in text


def test_metrics_escape_label_values() -> None:
    metrics = Metrics()
    metrics.question_errors.labels(front="ui", error_type='a"b\\c\nd').inc()
    assert 'error_type="a\\"b\\\\c\\nd"' in metrics.render()


def test_events_of_a_failed_question_count_as_errors(tc: tablechat.TableChat) -> None:
    metrics = Metrics()

    async def events() -> Any:
        yield ev.Status(step="schema", message="reading schema")
        yield ev.Error(message="boom", error_type="NoAnswerError")
        yield ev.Done(ok=False)

    async def drain() -> None:
        async for _ in metrics.meter(events(), "api"):
            pass

    asyncio.run(drain())
    r = metrics
    assert r.value("tablechat_questions_total", front="api", engine="none", outcome="error") == 1
    assert r.value("tablechat_question_errors_total", front="api",
                   error_type="NoAnswerError") == 1


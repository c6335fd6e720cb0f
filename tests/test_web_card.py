"""Each answer shows its work, in words meant for the person (issue 12), without a browser:
refusals with rewordings to click and no admin advice, the reading under each answer, the
SQL/table/chart inside the message, the side pane following a clicked message, numbers
formatted one way, charts that name their axes and series."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
import socket
from pathlib import Path

import tablechat
from tablechat import events as ev
from tablechat.core import NO_LLM_HELP, NoLLMEngine
from tablechat.web import chat, formats, svgchart
from tablechat.web.files import ResultFiles
from tablechat.web.handlers import Handlers
from tablechat.web.results import Result, chart_view

ADMIN_WORDS = re.compile(r"TABLECHAT_|https?:|vllm|--llm-url|llm_url|127\.0\.0\.1", re.I)
UNITS = {"revenue": "$"}


def answer(tc: tablechat.TableChat, question: str,
           conv: list[chat.Turn] | None = None) -> list[chat.Turn]:
    async def go() -> list[chat.Turn]:
        return [u async for u in chat.ask(tc, question, conv or [], session="s")][-1].conv
    return asyncio.run(go())


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# --- refusals -------------------------------------------------------------------------------
def test_a_refusal_offers_rewordings_to_click_and_no_admin_advice(
        offline_tc: tablechat.TableChat) -> None:
    conv = answer(offline_tc, "What is the ratio of cancelled orders?")
    msgs = chat.messages(conv)
    last = msgs[-1]
    assert "“ratio”" in last["content"], "the refusal names the word it did not understand"
    labels = [o["value"] for o in last["options"]]
    assert 2 <= len(labels) <= 3 and all(q.endswith("?") for q in labels), labels
    assert not any(ADMIN_WORDS.search(str(m["content"])) for m in msgs)
    assert conv[-1].get("result") is None, "a refusal has no result of its own"
    # a clicked rewording is answered: its options are gone once a new answer follows
    after = answer(offline_tc, labels[0], conv)
    assert "options" not in chat.messages(after)[-3], "only the last answer offers them"
    assert after[-1].get("result") is not None


def test_without_an_llm_the_answer_has_no_setup_advice(demo_db: Path) -> None:
    assert not ADMIN_WORDS.search(NO_LLM_HELP)

    async def text() -> str:
        events = NoLLMEngine("unreachable").run(None, None)  # type: ignore[arg-type]
        return " ".join([e.text async for e in events if isinstance(e, ev.AnswerText)])
    assert not ADMIN_WORDS.search(asyncio.run(text()))
    tc = tablechat.connect(demo_db, llm_url=closed_port_url())
    try:
        conv = answer(tc, "How many customers are there?")
    finally:
        tc.close()
    shown = " ".join(str(m["content"]) for m in chat.messages(conv))
    assert "5,000" in shown and "offline engine" in shown
    assert not ADMIN_WORDS.search(shown), shown


# --- the work in the message ----------------------------------------------------------------
def test_each_answer_shows_its_reading_and_its_own_work(offline_tc: tablechat.TableChat) -> None:
    conv = answer(offline_tc, "Monthly revenue in 2024")
    conv = answer(offline_tc, "Revenue by region", conv)
    msgs = chat.messages(conv)
    answers = [m["content"] for m in msgs if m["role"] == "assistant" and not m.get("metadata")]
    monthly, regions = answers
    assert "Read as: revenue per month, orders in 2024" in monthly
    assert "excluding cancelled and returned orders" in monthly
    assert "<td class=\"txt\">Jan</td>" in monthly, "months by name in the table"
    assert ">Jan</text>" in monthly and ">Dec</text>" in monthly, "and on the time axis"
    assert ">Europe</text>" in regions and "Read as: revenue by region" in regions
    # the side pane follows the message clicked: the first answer's result, not the last
    first_answer = next(i for i, m in enumerate(msgs) if m["content"] == monthly)
    _, result = chat.result_of(conv, first_answer)
    assert result is not None and result.columns == ["month", "revenue"] and len(result.rows) == 12
    _, from_question = chat.result_of(conv, 0)
    assert from_question is result, "clicking the question shows its answer's result"
    assert chat.result_of(conv, 99) == (None, None)


def test_the_message_table_and_chart_show_data_as_text() -> None:
    result = Result("", ["name", "revenue"], [("<img src=x onerror=alert(1)>", 5.0),
                                               ("http://evil.example/a.png", 2.0)])
    conv = chat.record_sql_run([], "SELECT 1", result, None, UNITS)
    work = chat.messages(conv)[-1]["content"]
    assert "<img" not in work and "&lt;img src=x onerror=alert(1)&gt;" in work
    assert "http://evil" not in work and "http&#58;//evil.example" in work


# --- numbers and charts ---------------------------------------------------------------------
def test_numbers_are_formatted_one_way() -> None:
    assert formats.cell(2019.0, "year", UNITS) == "2019"
    assert formats.cell(2019, "order_year", UNITS) == "2019"
    assert formats.cell(4751697.72, "revenue", UNITS) == "$4,751,697.72"
    assert formats.cell(-12.5, "total_revenue", UNITS) == "-$12.50"
    assert formats.cell(5000, "customers", UNITS) == "5,000"
    assert formats.cell(5000.0, "customers", UNITS) == "5,000"
    assert formats.cell(dt.datetime(2024, 3, 1), "day", UNITS) == "2024-03-01"
    assert formats.table(["month", "n"], [(1, 3), (12, 4)], UNITS) == [["Jan", "3"],
                                                                      ["Dec", "4"]]
    assert formats.short(4_751_697.72, "$") == "$4.8M" and formats.short(12) == "12"
    frame, _, _ = Result("", ["year", "revenue"], [(2019.0, 1234.5)]).page(0, UNITS)
    assert frame.values.tolist() == [["2019", "$1,234.50"]]


def test_time_axes_show_years_and_month_names_at_most_six_labels() -> None:
    years = svgchart.render({"type": "line", "x": "year", "y": "orders"}, ["year", "orders"],
                            [(2019.0 + i, 10 * i) for i in range(6)], {})
    assert ">2019</text>" in years and "2,019" not in years and "2019.0" not in years
    months = [(dt.date(2023 + m // 12, m % 12 + 1, 1), m) for m in range(24)]
    svg = svgchart.render({"type": "line", "x": "month", "y": "orders"}, ["month", "orders"],
                          months, {})
    ticks = re.findall(r'class="tc-tick" fill="currentColor">([^<]*)<', svg)
    assert ticks[0] == "Jan 2023" and ticks[-1] == "Dec 2024" and len(ticks) <= 6


def test_a_chart_of_several_series_has_a_legend() -> None:
    rows = [(2023, "Books", 5), (2024, "Books", 7), (2023, "Games", 3), (2024, "Games", 4)]
    svg = svgchart.render({"type": "line", "x": "year", "y": "units", "color": "category"},
                          ["year", "category", "units"], rows, {})
    legend = re.findall(r'class="tc-legend" fill="currentColor">([^<]*)<', svg)
    assert legend == ["Books", "Games"] and svg.count("<polyline") == 2


def test_bars_keep_long_labels_apart_and_start_at_zero() -> None:
    rows = [(f"A very long category name number {i}", 100.0 - i) for i in range(3)]
    view = chart_view(Result("", ["category", "revenue"], rows), UNITS)
    labels = re.findall(r'text-anchor="end" fill="currentColor">([^<]*)<', view.html)
    assert all(len(label) <= svgchart.LABEL_CHARS for label in labels)
    assert ">$100</text>" in view.html
    ys = [float(y) for y in re.findall(r'<rect x="[\d.]+" y="([\d.]+)"', view.html)]
    assert all(b - a >= 20 for a, b in itertools.pairwise(ys)), "one row per bar"


# --- results --------------------------------------------------------------------------------
def test_the_csv_is_named_after_the_question_and_no_setting_is_shown(
        offline_tc: tablechat.TableChat, tmp_path: Path) -> None:
    files = ResultFiles(session_bytes=10**7, total_bytes=10**8, max_age=3600, root=tmp_path)
    h = Handlers(offline_tc, files, None)
    result = Result("", ["region", "revenue"], [("Europe", 1.0)], question="Revenue by region?")
    path = h.csv_file(result, "s")
    assert path is not None and path.name.endswith("-revenue-by-region.csv")
    assert path.name.startswith("result-"), "within the session's disk budget"
    cut = Result("", ["a"], [(1,)] * 60, truncated=True)
    assert "TABLECHAT_" not in cut.info() and "row cap of 60" in cut.info()


def test_a_year_of_months_in_several_series_keeps_its_labels_apart_and_round() -> None:
    """Seen in a browser at 1440x900 (issue 12): twelve month starts of 2024 put six labels
    ("Jan 2024", "Mar 2024" ...) 46 px apart where each takes ~45 px, the end ones anchored
    outwards, so "Jan 2024 / Mar 2024" overlapped; counts were gridlined at 395.33 and
    790.67."""
    rows = [(dt.date(2024, m, 1), channel, 300 + 40 * m + 300 * k)
            for m in range(1, 13) for k, channel in enumerate(("in-store", "online", "phone"))]
    svg = svgchart.render({"type": "line", "x": "month", "y": "orders", "color": "channel"},
                          ["month", "channel", "orders"], rows, {})
    ticks = re.findall(r'<text x="([\d.]+)" y="[\d.]+" font-size="10" text-anchor="(\w+)" '
                       r'class="tc-tick" fill="currentColor">([^<]*)<', svg)
    assert ticks[0][2] == "Jan 2024" and ticks[-1][2] == "Dec 2024"
    boxes = []
    for x, anchor, label in ticks:
        width = svgchart.CHAR_PX * len(label)
        left = float(x) - {"start": 0, "middle": width / 2, "end": width}[anchor]
        boxes.append((left, left + width))
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(boxes)), ticks
    grid = re.findall(r'text-anchor="end" fill="currentColor">([^<]*)</text>', svg)
    assert grid == ["0", "500", "1k", "1.5k"], grid

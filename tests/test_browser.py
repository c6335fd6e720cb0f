"""The UI in a real browser: Debian's chromium driven by Playwright (never `playwright install`).

Each flow runs on a desktop (1440x900) and a phone (390x844) and saves a screenshot of each
under test-artifacts/. Any console error or uncaught page error fails the test, and every
request the page makes outside the server is blocked and recorded: the UI must work with
127.0.0.1 only. Every wait follows the page's state (text shown, a button enabled again),
never the clock.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect, sync_playwright

import tablechat
from tests.conftest import ARTIFACTS
from tests.test_web_support import LiveServer, ScriptedChatModel

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT = 30_000
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
SIZES = {"desktop": DESKTOP, "phone": PHONE}
expect.set_options(timeout=TIMEOUT)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("chromium is missing: run `make browser` (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(demo_db: Path) -> Iterator[LiveServer]:
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel(token_delay=0.02))
    live = LiveServer(tc).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def offline(demo_db: Path) -> Iterator[LiveServer]:
    """The demo with no LLM: the offline engine answers, refuses and suggests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TABLECHAT_LLM_URL", raising=False)
        tc = tablechat.connect(demo_db)
    live = LiveServer(tc).start()
    yield live
    live.stop()


def wait_until_ready(page: Page) -> None:
    """The page answers events: its load event came back (the header names the engine).
    The question box alone shows before the page's events are wired: a question typed that
    early was never sent."""
    page.wait_for_selector("#tc-question textarea")
    expect(page.locator("#tc-engine")).to_contain_text("Engine")


class Session:
    """A browser tab of its own; what it reached outside and what the console reported."""

    def __init__(self, browser: Browser, url: str, viewport: dict[str, int]) -> None:
        self.context = browser.new_context(viewport=viewport)
        self.outside: list[str] = []
        self.errors: list[str] = []

        def guard(route: Route) -> None:
            target = route.request.url
            if target.startswith((url, "data:", "blob:")):
                route.continue_()
            else:
                self.outside.append(target)
                route.abort()

        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.errors.append(message.text)

        self.context.route("**/*", guard)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT)
        self.page.on("console", console)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.goto(url + "/")
        wait_until_ready(self.page)

    def close(self) -> None:
        self.context.close()
        assert self.outside == [], f"the page reached outside 127.0.0.1: {self.outside}"
        assert self.errors == [], f"console errors: {self.errors}"


def _open(browser: Browser, live: LiveServer, size: str) -> Iterator[Page]:
    session = Session(browser, live.url, SIZES[size])
    yield session.page
    session.close()


@pytest.fixture(params=list(SIZES))
def page(request: pytest.FixtureRequest, browser: Browser, server: LiveServer
         ) -> Iterator[Page]:
    """A tab on the LLM-backed app, at each size."""
    yield from _open(browser, server, request.param)


@pytest.fixture(params=list(SIZES))
def offline_page(request: pytest.FixtureRequest, browser: Browser, offline: LiveServer
                 ) -> Iterator[Page]:
    """A tab on the offline app, at each size."""
    yield from _open(browser, offline, request.param)


@pytest.fixture()
def desktop(browser: Browser, server: LiveServer) -> Iterator[Page]:
    yield from _open(browser, server, "desktop")


def size_of(page: Page) -> str:
    return "phone" if (page.viewport_size or DESKTOP)["width"] < 600 else "desktop"


def shot(page: Page, artifacts: Path, name: str) -> None:
    page.screenshot(path=artifacts / f"browser-{name}-{size_of(page)}.png", full_page=True)


def ask(page: Page, question: str, answer: str) -> None:
    """Send ``question`` and wait until its answer is whole: ``answer`` is shown and Stop,
    pressable while it runs, is not any more."""
    page.fill("#tc-question textarea", question)
    page.press("#tc-question textarea", "Enter")
    try:
        expect(page.locator("#tc-chat")).to_contain_text(answer)
        expect(page.locator("#tc-stop")).to_be_disabled()
    except AssertionError:  # what the page showed instead, for the report
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / f"browser-failed-{size_of(page)}.png", full_page=True)
        raise


def last_answer(page: Page) -> object:
    return page.locator("#tc-chat .bot-row").last


def no_overlap(page: Page, selector: str) -> list[str]:
    """Texts under ``selector`` whose boxes overlap another's (as laid out on screen)."""
    return page.evaluate("""sel => {
        const boxes = Array.from(document.querySelectorAll(sel)).map(e =>
            [e.textContent, e.getBoundingClientRect()]).filter(([, r]) => r.width > 0);
        const bad = [];
        for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
            const [a, r] = boxes[i], [b, s] = boxes[j];
            if (r.left < s.right - 0.5 && s.left < r.right - 0.5 &&
                r.top < s.bottom - 0.5 && s.top < r.bottom - 0.5) bad.push(a + ' / ' + b);
        }
        return bad;
    }""", selector)


def outside_bubble(page: Page, selector: str) -> list[str]:
    """Texts under ``selector`` that stick out of their chat message (cut off on screen)."""
    return page.evaluate("""sel => Array.from(document.querySelectorAll(sel)).filter(e => {
        const r = e.getBoundingClientRect(), m = e.closest('.message').getBoundingClientRect();
        return r.width > 0 && (r.left < m.left - 0.5 || r.right > m.right + 0.5);
    }).map(e => e.textContent)""", selector)


# --- an answer and its work -----------------------------------------------------------------
def test_ask_shows_the_work_in_the_answer_and_beside_it(page: Page, artifacts: Path) -> None:
    page.get_by_role("button", name="Revenue by region").click()  # an example question
    expect(page.locator("#tc-chat")).to_contain_text("Europe brings the most revenue.")
    expect(page.locator("#tc-stop")).to_be_disabled()
    chat = page.locator("#tc-chat")
    expect(chat).to_contain_text("answered by LLM (ScriptedChatModel)")
    expect(chat.locator("details.tc-work-sql summary")).to_have_text("SQL")
    expect(chat.locator("details.tc-work-table summary")).to_have_text("Table · 5 rows")
    chart = chat.locator(".tc-msg-chart svg")
    expect(chart).to_be_visible()  # open by default, under the answer
    expect(chart).to_contain_text("Europe")
    chat.locator("details.tc-work-table summary").click()
    expect(chat.locator(".tc-msg-table")).to_contain_text("$4,751,697.72")
    chat.locator("details.tc-work-sql summary").click()
    expect(chat.locator("details.tc-work-sql")).to_contain_text("r.name AS region")
    expect(chat).not_to_contain_text("LIMIT 1001")
    assert no_overlap(page, "#tc-chat .tc-msg-chart text") == []
    assert outside_bubble(page, "#tc-chat .tc-msg-chart text") == []
    # the side pane shows the same result, formatted the same way
    expect(page.locator("#tc-table")).to_contain_text("$4,751,697.72")
    expect(page.locator("#tc-table-info")).to_contain_text("5 rows")
    expect(page.locator("#tc-chart svg.tc-svg")).to_contain_text("Europe")
    expect(page.locator("#tc-sql .cm-content")).to_contain_text("r.name AS region")
    expect(page.locator("#tc-engine")).to_contain_text("ScriptedChatModel")
    page.get_by_text("Steps").first.click()  # open the finished steps
    expect(chat).to_contain_text("running the query")
    shot(page, artifacts, "ask")


def test_a_number_is_big_and_a_follow_up_uses_the_history(page: Page, artifacts: Path) -> None:
    ask(page, "How many customers are there?", "There are 5,000 customers.")
    expect(page.locator("#tc-number")).to_contain_text("5,000")
    ask(page, "Revenue by region", "Europe brings the most revenue.")
    expect(page.locator("#tc-chart svg.tc-svg")).to_be_visible()
    expect(page.locator("#tc-number")).to_be_hidden()
    ask(page, "Only Europe", "Europe alone.")
    expect(page.locator("#tc-sql .cm-content")).to_contain_text("'Europe'")
    expect(page.locator("#tc-table")).not_to_contain_text("North America")
    # earlier answers keep their own work
    expect(page.locator("#tc-chat details.tc-work-table")).to_have_count(3)
    shot(page, artifacts, "follow-up")


def test_the_side_pane_follows_the_message_clicked(offline_page: Page, artifacts: Path) -> None:
    page = offline_page
    ask(page, "Monthly revenue in 2024", "Revenue per month for orders in 2024")
    chat = page.locator("#tc-chat")
    expect(chat).to_contain_text("Read as: revenue per month, orders in 2024")
    month_chart = chat.locator(".tc-msg-chart svg").first
    expect(month_chart).to_contain_text("Jan")
    expect(month_chart).to_contain_text("Dec")
    assert no_overlap(page, "#tc-chat .tc-msg-chart text") == []
    ask(page, "Revenue by region", "Europe has the highest revenue")
    expect(page.locator("#tc-table")).to_contain_text("North America")
    page.get_by_role("tab", name="Schema").click()
    page.get_by_text("Revenue per month for orders in 2024").click()
    # the Result tab comes forward with the clicked answer's result
    expect(page.get_by_role("tab", name="Result")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#tc-table")).to_contain_text("Jan")
    expect(page.locator("#tc-table")).not_to_contain_text("North America")
    expect(page.locator("#tc-sql .cm-content")).to_contain_text("order_date")
    shot(page, artifacts, "select")


def test_a_follow_up_says_what_it_kept_and_a_new_question_keeps_nothing(
        offline_page: Page, artifacts: Path) -> None:
    page = offline_page
    ask(page, "Revenue by region", "Europe has the highest revenue")
    ask(page, "and in 2023?", "for orders in 2023")
    expect(last_answer(page)).to_contain_text("Kept from your earlier question: by region")
    ask(page, "List every customer", "Showing the first 1,000 customers")
    expect(last_answer(page)).not_to_contain_text("Kept from")  # its own subject: new
    expect(page.locator("#tc-table")).not_to_contain_text("North America")
    # a new result brings the Result tab forward; a time axis shows whole years
    page.get_by_role("tab", name="Schema").click()
    ask(page, "Revenue by year", "Revenue per year")
    expect(page.get_by_role("tab", name="Result")).to_have_attribute("aria-selected", "true")
    chart = last_answer(page).locator(".tc-msg-chart svg")
    for year in ("2022", "2023", "2024"):
        expect(chart.get_by_text(year, exact=True)).to_have_count(1)
    expect(chart).not_to_contain_text("2,02")
    expect(chart).not_to_contain_text(".0")
    assert no_overlap(page, "#tc-chat .tc-msg-chart text") == []
    shot(page, artifacts, "follow-up-offline")


def test_a_refusal_offers_rewordings_and_keeps_the_last_result(offline_page: Page,
                                                               artifacts: Path) -> None:
    page = offline_page
    ask(page, "Revenue by region", "Europe has the highest revenue")
    ask(page, "What is the ratio of cancelled orders?", "I don't know what “ratio” means")
    chat = page.locator("#tc-chat")
    for word in ("TABLECHAT_", "http", "vllm", "LIMIT 1001"):
        expect(page.locator("body")).not_to_contain_text(word)
    expect(page.locator("#tc-table")).to_contain_text("North America"), "not blanked"
    expect(page.locator("#tc-engine")).to_contain_text("For the admin")
    suggestion = chat.get_by_role("button", name="How many orders are there?")
    expect(suggestion).to_be_visible()
    shot(page, artifacts, "refusal")
    suggestion.click()
    expect(chat).to_contain_text("orders", use_inner_text=True)
    expect(page.locator("#tc-number")).to_be_visible()  # its answer: one number
    expect(page.locator("#tc-stop")).to_be_disabled()
    expect(chat.get_by_role("button", name="How many orders are there?")).to_have_count(0)


# --- the SQL editor, export, CSV ------------------------------------------------------------
def test_edit_the_sql_and_run_it_again(page: Page, artifacts: Path) -> None:
    ask(page, "Revenue by region", "Europe brings the most revenue.")
    expect(page.locator("#tc-table")).to_contain_text("Latin America")
    editor = page.locator("#tc-sql .cm-content")
    for n in (1, 2, 3):  # "undefined" axes showed up on every run before (issue 12)
        editor.click()
        page.keyboard.press("Control+A")
        page.keyboard.press("Delete")
        page.keyboard.type("SELECT r.name AS region, count(*) AS customers FROM customers c "
                           f"JOIN regions r ON r.id = c.region_id GROUP BY 1 ORDER BY 2 DESC "
                           f"LIMIT {6 - n}")
        page.click("#tc-run")
        # the new result, not the previous one: its own row count
        expect(page.locator("#tc-table-info")).to_have_text(f"{6 - n} rows")
        expect(page.locator("#tc-table")).to_contain_text("customers")
        expect(page.locator("#tc-chart svg.tc-svg")).to_contain_text("customers")
        expect(page.locator("#tc-chat details.tc-work-table")).to_have_count(1 + n)
    expect(page.locator("body")).not_to_contain_text("undefined")
    expect(page.locator("#tc-chat")).to_contain_text("Ran the edited SQL")
    assert outside_bubble(page, "#tc-chat .tc-msg-chart text") == []
    shot(page, artifacts, "edit-sql")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.type("DROP TABLE customers")
    page.click("#tc-run")
    expect(page.locator("#tc-notice")).to_contain_text("not DROP")
    expect(page.locator("#tc-table-info")).to_have_text("3 rows"), "the last result stays"


def test_a_chart_of_several_series_shows_its_legend(page: Page, artifacts: Path) -> None:
    """Issue 12, "charts that work": legends visible. A line per channel over the months of
    2024, from the SQL box: every series is named on screen, inside the chart and its message,
    and no text of the chart overlaps another."""
    ask(page, "Revenue by region", "Europe brings the most revenue.")
    editor = page.locator("#tc-sql .cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.type("SELECT date_trunc('month', order_date) AS month, channel, "
                       "count(*) AS orders FROM orders WHERE year(order_date) = 2024 "
                       "GROUP BY 1, 2 ORDER BY 1, 2")
    page.click("#tc-run")
    expect(page.locator("#tc-chat")).to_contain_text("Ran the edited SQL")
    channels = ["in-store", "online", "phone"]  # the demo's (data/demo/build.sql)
    expect(page.locator("#tc-table-info")).to_have_text(f"{12 * len(channels)} rows")
    for where in ("#tc-chat .tc-msg-chart", "#tc-chart"):
        legend = page.locator(f"{where} svg text.tc-legend")
        expect(legend).to_have_count(len(channels))
        for i in range(len(channels)):
            expect(legend.nth(i)).to_be_visible()
        assert sorted(legend.all_text_contents()) == channels
        shot(page, artifacts, "legend")
        assert no_overlap(page, f"{where} svg text") == [], where
    assert outside_bubble(page, "#tc-chat .tc-msg-chart text") == []


def test_a_result_cut_at_the_row_cap_exports_all_its_rows(desktop: Page, artifacts: Path,
                                                          tmp_path: Path) -> None:
    page = desktop
    editor = page.locator("#tc-sql .cm-content")
    editor.click()
    page.keyboard.type("SELECT id FROM customers ORDER BY id LIMIT 1500")
    page.click("#tc-run")
    info = page.locator("#tc-table-info")
    expect(info).to_contain_text("cut at the row cap of 1,000")
    expect(page.locator("#tc-csv")).to_contain_text("1,000 rows shown")
    page.click("#tc-export")
    expect(info).to_contain_text("the query found 1,500 rows; the CSV has all 1,500")
    expect(page.locator("#tc-csv")).to_contain_text("all 1,500 rows")
    expect(page.locator("#tc-export")).to_be_hidden()
    page.click("#tc-next")  # the result in the session's state keeps what the export found
    expect(info).to_contain_text("Showing rows 51–100 of 1,000")
    expect(info).to_contain_text("the query found 1,500 rows")
    with page.expect_download() as download:
        page.click("#tc-csv")
    saved = tmp_path / "export.csv"
    download.value.save_as(saved)
    lines = saved.read_text().splitlines()
    assert lines[0] == "id" and len(lines) == 1501 and lines[-1] == "1500"
    shot(page, artifacts, "export")


def test_the_csv_is_named_after_the_question(page: Page, tmp_path: Path) -> None:
    ask(page, "Revenue by region", "Europe brings the most revenue.")
    expect(page.locator("#tc-csv")).to_be_visible()
    with page.expect_download() as download:
        page.click("#tc-csv")
    assert download.value.suggested_filename.endswith("-revenue-by-region.csv")
    saved = tmp_path / "r.csv"
    download.value.save_as(saved)
    assert saved.read_text().splitlines()[0] == "region,revenue"


# --- the phone, the input, Stop, Clear ------------------------------------------------------
def test_the_phone_layout(browser: Browser, server: LiveServer, artifacts: Path) -> None:
    session = Session(browser, server.url, PHONE)
    page = session.page
    box = page.locator("#tc-question textarea").bounding_box()
    send = page.locator("#tc-ask").bounding_box()
    stop = page.locator("#tc-stop").bounding_box()
    assert box and send and stop
    # one line: the box, Send and Stop side by side, within the screen
    assert abs(box["y"] - send["y"]) < box["height"] and abs(send["y"] - stop["y"]) < 2
    assert box["x"] + box["width"] <= send["x"] <= stop["x"] and stop["x"] + stop["width"] <= 390
    cut = page.evaluate("""() => {
        const t = document.querySelector('#tc-question textarea');
        const s = getComputedStyle(t);
        const c = document.createElement('canvas').getContext('2d');
        c.font = s.font;
        const room = t.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
        return c.measureText(t.placeholder).width > room;
    }""")
    assert not cut, "the placeholder shows whole"
    ask(page, "Revenue by region", "Europe brings the most revenue.")
    answer = page.get_by_text("Europe brings the most revenue.").bounding_box()
    chart = page.locator("#tc-chat .tc-msg-chart svg").bounding_box()
    assert answer and chart
    assert 0 < chart["y"] - answer["y"] < 844, "the result is right under the answer"
    assert chart["x"] >= 0 and chart["x"] + chart["width"] <= 390
    assert no_overlap(page, "#tc-chat .tc-msg-chart text") == []
    assert outside_bubble(page, "#tc-chat .tc-msg-chart text") == []
    page.locator("#tc-chat details.tc-work-table summary").click()
    expect(page.locator("#tc-chat .tc-msg-table")).to_contain_text("Middle East & Africa")
    broken = page.evaluate("""() => Array.from(document.querySelectorAll(
        '#tc-chat .tc-msg-table td, #tc-table td')).filter(td => {
            const s = getComputedStyle(td);
            return s.wordBreak === 'break-all' || s.overflowWrap === 'anywhere';
        }).length""")
    assert broken == 0, "no word is broken mid-way in a table"
    # the click on the message also brought its result to the pane below
    expect(page.locator("#tc-table")).to_contain_text("Middle East & Africa")
    expect(page.locator("#tc-sql .cm-content")).to_contain_text("r.name AS region")
    shot(page, artifacts, "phone")
    session.close()


def test_typing_during_an_answer_is_kept_and_stop_is_only_for_a_running_one(
        page: Page, artifacts: Path) -> None:
    stop = page.locator("#tc-stop")
    expect(stop).to_be_disabled()
    page.fill("#tc-question textarea", "Something slow")
    page.press("#tc-question textarea", "Enter")
    expect(page.locator("#tc-question textarea")).to_have_value("")
    expect(stop).to_be_enabled()  # the answer runs
    page.locator("#tc-question textarea").type("Which regions?")
    shot(page, artifacts, "running")
    expect(page.locator("#tc-chat")).to_contain_text("Slowly: three.")
    expect(stop).to_be_disabled()
    expect(page.locator("#tc-question textarea")).to_have_value("Which regions?")
    page.press("#tc-question textarea", "Enter")
    expect(page.locator("#tc-chat")).to_contain_text("There are five regions.")


def test_stop_a_running_question(page: Page, artifacts: Path) -> None:
    page.fill("#tc-question textarea", "Something slow")
    page.press("#tc-question textarea", "Enter")
    stop = page.locator("#tc-stop")
    expect(stop).to_be_enabled()
    stop.click()
    expect(page.locator("#tc-chat")).to_contain_text("(stopped)")
    expect(stop).to_be_disabled()
    ask(page, "Which regions?", "There are five regions.")


def test_a_question_sent_right_after_stop_or_clear_is_answered(page: Page) -> None:
    """The flake of test_stop_a_running_question, pinned: a question sent while Gradio's
    cancel of the stopped answer was still on its way waited (``always_last``) for that answer
    to end, and the cancelled end dropped it. The page's requests to /cancel are held until
    the next question is sent, the order a loaded machine produced one run in three."""
    held: list[Route] = []
    page.route("**/gradio_api/cancel", lambda route: held.append(route))
    box, stop, chat = page.locator("#tc-question textarea"), page.locator("#tc-stop"), \
        page.locator("#tc-chat")
    for end in ("Stop", "Clear"):
        box.fill("Something slow")
        box.press("Enter")
        expect(stop).to_be_enabled()  # the answer runs
        if end == "Stop":
            stop.click()
            expect(chat).to_contain_text("(stopped)")
        else:
            chat.get_by_role("button", name="Clear").click()
            expect(chat).not_to_contain_text("Which regions?")
        box.fill("Which regions?")
        box.press("Enter")
        expect(box).to_have_value("")  # sent
        for route in held:  # the cancel, if any, reaches the server only now
            route.continue_()
        held.clear()
        expect(chat.get_by_text("There are five regions.")).to_have_count(1)
        expect(stop).to_be_disabled()
    expect(chat).not_to_contain_text("Something slow")  # cleared, and not brought back
    expect(chat).not_to_contain_text("(stopped)")


def fn_index(live: LiveServer, api_name: str) -> int:
    """The index the page sends in its queue/join for the event named ``api_name``."""
    config = httpx.get(live.url + "/config", timeout=30).json()
    return next(dep["id"] for dep in config["dependencies"] if dep.get("api_name") == api_name)


def test_typing_right_after_clear_is_kept_and_answered(page: Page, server: LiveServer) -> None:
    """The cause of the Stop/Clear flake: Clear's reply emptied the question box, and on a
    loaded machine it came back after the next question was typed, so Enter sent an empty
    box and no answer came. The page's Clear request is held here until the question is
    typed, the order a loaded machine produced."""
    clear = fn_index(server, "clear")
    held: list[Route] = []

    def hold_clear(route: Route) -> None:
        body = route.request.post_data_json or {}
        if isinstance(body, dict) and body.get("fn_index") == clear:
            held.append(route)
        else:
            route.continue_()

    page.route("**/gradio_api/queue/join*", hold_clear)
    box, chat = page.locator("#tc-question textarea"), page.locator("#tc-chat")
    ask(page, "Which regions?", "There are five regions.")
    expect(page.locator("#tc-table")).to_be_visible()
    with page.expect_request(lambda req: "queue/join" in req.url
                             and (req.post_data_json or {}).get("fn_index") == clear):
        chat.get_by_role("button", name="Clear").click()
    expect(chat).not_to_contain_text("There are five regions.")  # emptied in the page
    box.fill("How many customers?")  # typed before the server heard of Clear
    for route in held:
        route.continue_()
    expect(page.locator("#tc-table")).to_be_hidden()  # Clear's reply has come back
    expect(box).to_have_value("How many customers?")
    box.press("Enter")
    expect(chat).to_contain_text("There are 5,000 customers.")
    expect(page.locator("#tc-stop")).to_be_disabled()
    expect(chat).not_to_contain_text("There are five regions.")


def test_one_clear_control_empties_the_chat_and_the_result(page: Page) -> None:
    ask(page, "Which regions?", "There are five regions.")
    assert page.get_by_role("button", name=re.compile("Clear chat")).count() == 0
    clear = page.locator("#tc-chat").get_by_role("button", name="Clear")
    expect(clear).to_have_count(1)
    clear.click()
    expect(page.locator("#tc-chat")).not_to_contain_text("There are five regions.")
    expect(page.locator("#tc-table")).to_be_hidden()


def test_empty_question_changes_nothing(page: Page) -> None:
    page.click("#tc-ask")
    expect(page.locator("#tc-notice")).to_contain_text("empty")
    expect(page.locator("#tc-chat")).not_to_contain_text("answered by")


# --- uploads, login, closing the tab --------------------------------------------------------
def test_upload_a_csv_and_ask_about_it(desktop: Page, artifacts: Path, tmp_path: Path) -> None:
    page = desktop
    csv = tmp_path / "pets.csv"
    csv.write_text("name,species,age\nrex,dog,3\nfido,dog,5\ntom,cat,4\n")
    page.get_by_role("tab", name="Upload").click()
    page.set_input_files("#tc-upload input[type=file]", str(csv))
    expect(page.locator("#tc-upload-msg")).to_contain_text("Uploaded pets")
    page.get_by_role("tab", name="Schema").click()
    expect(page.locator("#tc-tables")).to_contain_text("your upload")
    shot(page, artifacts, "schema")
    ask(page, "Average age of pets", "The pets are 4 years old on average.")
    expect(page.get_by_role("tab", name="Result")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#tc-number")).to_contain_text("4")
    expect(page.locator("#tc-sql .cm-content")).to_contain_text("FROM pets")


def test_a_binary_file_named_csv_gets_a_clear_message(desktop: Page, tmp_path: Path) -> None:
    fake = tmp_path / "photo.csv"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    desktop.get_by_role("tab", name="Upload").click()
    desktop.set_input_files("#tc-upload input[type=file]", str(fake))
    expect(desktop.locator("#tc-upload-msg")).to_contain_text("binary data")


def test_login_page_then_the_app(browser: Browser, demo_db: Path, artifacts: Path) -> None:
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel(), auth="ana:pw1", api_keys="k1")
    live = LiveServer(tc).start()
    try:
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        page.goto(live.url + "/")
        page.get_by_label("username").fill("ana")
        page.get_by_label("password").fill("pw1")
        page.screenshot(path=artifacts / "browser-login-desktop.png", full_page=True)
        page.get_by_role("button", name="Login").click()
        wait_until_ready(page)
        ask(page, "Which regions?", "There are five regions.")
        expect(page.locator("#tc-table")).to_contain_text("Middle East & Africa")
        context.close()
    finally:
        live.stop()


def test_closing_the_tab_drops_its_uploads(browser: Browser, server: LiveServer,
                                           tmp_path: Path) -> None:
    ended: list[str] = []
    end_session = server.tc.end_session

    def record(session: str) -> None:
        ended.append(session)
        end_session(session)

    server.tc.end_session = record  # type: ignore[method-assign]
    try:
        csv = tmp_path / "pets.csv"
        csv.write_text("name,age\nrex,3\n")
        session = Session(browser, server.url, DESKTOP)
        session.page.get_by_role("tab", name="Upload").click()
        session.page.set_input_files("#tc-upload input[type=file]", str(csv))
        expect(session.page.locator("#tc-upload-msg")).to_contain_text("Uploaded pets")
        session.close()
        deadline = time.monotonic() + 30  # the server learns of the closed tab on its own
        while not ended and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ended and ended[0].startswith("ui-")
        assert "pets" not in server.tc.snapshot(ended[0]).tables
    finally:
        server.tc.end_session = end_session  # type: ignore[method-assign]

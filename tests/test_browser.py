"""The UI in a real browser: Debian's chromium driven by Playwright (never `playwright install`).

Each test saves a screenshot under test-artifacts/. Every request the page makes outside the
server is blocked and recorded: the UI must work with 127.0.0.1 only.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

import tablechat
from tests.test_web_support import LiveServer, ScriptedChatModel

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT = 30_000
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


def open_page(browser: Browser, url: str) -> tuple[Page, list[str]]:
    """A fresh session (its own browser context) on ``url``; outside requests are blocked."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    outside: list[str] = []

    def guard(route: Route) -> None:
        target = route.request.url
        if target.startswith((url, "data:", "blob:")):
            route.continue_()
        else:
            outside.append(target)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(url + "/")
    return page, outside


@pytest.fixture()
def page(browser: Browser, server: LiveServer) -> Iterator[Page]:
    page, outside = open_page(browser, server.url)
    page.wait_for_selector("#tc-question textarea")
    yield page
    page.context.close()
    assert outside == [], f"the page reached outside 127.0.0.1: {outside}"


def ask(page: Page, question: str) -> None:
    page.fill("#tc-question textarea", question)
    page.press("#tc-question textarea", "Enter")


def sql_text(page: Page) -> str:
    return page.inner_text("#tc-sql .cm-content")


def test_ask_shows_steps_sql_table_and_chart(page: Page, artifacts: Path) -> None:
    page.get_by_role("button", name="Revenue by region").click()  # an example question
    expect(page.locator("#tc-chat")).to_contain_text("Europe brings the most revenue.")
    expect(page.locator("#tc-sql .cm-content")).to_contain_text("r.name AS region")
    table = page.locator("#tc-table")
    expect(table).to_contain_text("North America")
    expect(table).to_contain_text("4751697.72")
    expect(page.locator("#tc-table-info")).to_contain_text("5 rows")
    expect(page.locator("#tc-bar svg.marks")).to_be_visible()
    expect(page.locator("#tc-bar")).to_contain_text("revenue by region")
    expect(page.locator("#tc-line")).to_be_hidden()
    expect(page.locator("#tc-chat")).to_contain_text("answered by LLM (ScriptedChatModel)")
    expect(page.locator("#tc-engine")).to_contain_text("ScriptedChatModel")
    page.get_by_text("Steps").first.click()  # open the finished steps
    expect(page.locator("#tc-chat")).to_contain_text("running the query")
    page.screenshot(path=artifacts / "browser-ask.png", full_page=True)


def test_a_number_is_big_and_a_follow_up_uses_the_history(page: Page, artifacts: Path) -> None:
    ask(page, "How many customers are there?")
    expect(page.locator("#tc-number")).to_contain_text("5,000")
    expect(page.locator("#tc-chat")).to_contain_text("There are 5,000 customers.")
    ask(page, "Revenue by region")
    expect(page.locator("#tc-bar svg.marks")).to_be_visible()
    expect(page.locator("#tc-number")).to_be_hidden()
    expect(page.locator("#tc-chat")).to_contain_text("Europe brings the most revenue.")
    ask(page, "Only Europe")
    expect(page.locator("#tc-sql .cm-content")).to_contain_text("'Europe'")
    expect(page.locator("#tc-table")).not_to_contain_text("North America")
    page.screenshot(path=artifacts / "browser-follow-up.png", full_page=True)


def test_a_result_cut_at_the_row_cap_exports_all_its_rows(page: Page, artifacts: Path,
                                                          tmp_path: Path) -> None:
    editor = page.locator("#tc-sql .cm-content")
    editor.click()
    page.keyboard.type("SELECT id FROM customers ORDER BY id LIMIT 1500")
    page.click("#tc-run")
    info = page.locator("#tc-table-info")
    expect(info).to_contain_text("cut at the row cap")
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
    page.screenshot(path=artifacts / "browser-export.png", full_page=True)


def test_edit_the_sql_and_run_it_again(page: Page, artifacts: Path) -> None:
    ask(page, "Revenue by region")
    expect(page.locator("#tc-table")).to_contain_text("Latin America")
    expect(page.locator("#tc-chat")).to_contain_text("Europe brings the most revenue.")
    editor = page.locator("#tc-sql .cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.type("SELECT name AS category FROM categories ORDER BY name LIMIT 3")
    page.click("#tc-run")
    expect(page.locator("#tc-table")).to_contain_text("category")
    expect(page.locator("#tc-table")).not_to_contain_text("Latin America")
    expect(page.locator("#tc-table-info")).to_contain_text("3 rows")
    expect(page.locator("#tc-chat")).to_contain_text("Ran the edited SQL")
    page.screenshot(path=artifacts / "browser-edit-sql.png", full_page=True)
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.type("DROP TABLE customers")
    page.click("#tc-run")
    expect(page.locator("#tc-notice")).to_contain_text("not DROP")
    page.screenshot(path=artifacts / "browser-hostile-sql.png", full_page=True)


def test_upload_a_csv_and_ask_about_it(page: Page, artifacts: Path, tmp_path: Path) -> None:
    csv = tmp_path / "pets.csv"
    csv.write_text("name,species,age\nrex,dog,3\nfido,dog,5\ntom,cat,4\n")
    page.get_by_role("tab", name="Upload").click()
    page.set_input_files("#tc-upload input[type=file]", str(csv))
    expect(page.locator("#tc-upload-msg")).to_contain_text("Uploaded pets")
    page.screenshot(path=artifacts / "browser-upload.png", full_page=True)
    page.get_by_role("tab", name="Schema").click()
    expect(page.locator("#tc-tables")).to_contain_text("your upload")
    page.screenshot(path=artifacts / "browser-schema.png", full_page=True)
    page.get_by_role("tab", name="Result").click()
    ask(page, "Average age of pets")
    expect(page.locator("#tc-chat")).to_contain_text("The pets are 4 years old on average.")
    expect(page.locator("#tc-number")).to_contain_text("4")
    expect(page.locator("#tc-sql .cm-content")).to_contain_text("FROM pets")
    page.screenshot(path=artifacts / "browser-upload-ask.png", full_page=True)


def test_a_binary_file_named_csv_gets_a_clear_message(page: Page, tmp_path: Path) -> None:
    fake = tmp_path / "photo.csv"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    page.get_by_role("tab", name="Upload").click()
    page.set_input_files("#tc-upload input[type=file]", str(fake))
    expect(page.locator("#tc-upload-msg")).to_contain_text("binary data")


def test_stop_a_running_question(page: Page, artifacts: Path) -> None:
    ask(page, "Something slow")
    expect(page.locator("#tc-chat")).to_contain_text("…")  # a step is running
    page.screenshot(path=artifacts / "browser-running.png", full_page=True)
    page.click("#tc-stop")
    expect(page.locator("#tc-chat")).to_contain_text("(stopped)")
    ask(page, "Which regions?")
    expect(page.locator("#tc-chat")).to_contain_text("There are five regions.")


def test_empty_question_changes_nothing(page: Page) -> None:
    page.click("#tc-ask")
    expect(page.locator("#tc-notice")).to_contain_text("empty")
    expect(page.locator("#tc-chat")).not_to_contain_text("answered by")


def test_login_page_then_the_app(browser: Browser, demo_db: Path, artifacts: Path) -> None:
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel(), auth="ana:pw1", api_keys="k1")
    live = LiveServer(tc).start()
    try:
        page, outside = open_page(browser, live.url)
        page.get_by_label("username").fill("ana")
        page.get_by_label("password").fill("pw1")
        page.screenshot(path=artifacts / "browser-login.png", full_page=True)
        page.get_by_role("button", name="Login").click()
        page.wait_for_selector("#tc-question textarea")
        ask(page, "Which regions?")
        expect(page.locator("#tc-table")).to_contain_text("Middle East & Africa")
        page.context.close()
        assert outside == []
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
        page, outside = open_page(browser, server.url)
        page.get_by_role("tab", name="Upload").click()
        page.set_input_files("#tc-upload input[type=file]", str(csv))
        expect(page.locator("#tc-upload-msg")).to_contain_text("Uploaded pets")
        page.context.close()
        deadline = time.monotonic() + 30
        while not ended and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ended and ended[0].startswith("ui-")
        assert "pets" not in server.tc.snapshot(ended[0]).tables
        assert outside == []
    finally:
        server.tc.end_session = end_session  # type: ignore[method-assign]

"""Issue 11: the chat shows model and data text as text. In a real browser (Debian's chromium
through Playwright), an answer, a question, a result cell and a column name carrying a
Markdown image, an ``<img onerror>``, a ``<script>`` and links make no request to the address
they name and run no script."""

from __future__ import annotations

import http.server as stdlib_http
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

import tablechat
from tests.test_browser import ARGS, CHROMIUM, TIMEOUT
from tests.test_web_support import DEMO_RULES, LiveServer, ScriptedChatModel


class Recorder(stdlib_http.BaseHTTPRequestHandler):
    """Stands for the attacker's server: records every request (and serves a 1-pixel GIF)."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
        self.send_response(200)
        self.send_header("Content-Type", "image/gif")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def leak() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Handler", (Recorder,), {"seen": seen})
    httpd = stdlib_http.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


def hostile(url: str, tag: str) -> str:
    """Every way a text could make a browser load ``url`` or run a script."""
    return (f"![x]({url}/{tag}-md.png) <img src=\"{url}/{tag}-img.png\" "
            f"onerror=\"window.__pwned='{tag}'\"> <script>window.__pwned='{tag}-script'</script>"
            f" [click]({url}/{tag}-link) <{url}/{tag}-auto> ![r][ref]\n\n"
            f"[ref]: {url}/{tag}-ref.png")


@pytest.fixture(scope="module")
def server(demo_db: Path, leak: tuple[str, list[str]]) -> Iterator[LiveServer]:
    url, _ = leak
    cell = hostile(url, "cell").replace("'", "''").replace("\n", " ")
    label = f'<img src={url}/label.png onerror=window.__pwned=1>'
    rules = [
        (r"^sql: Show the notes", f"SELECT '{cell}' AS note, 2 AS n"),
        (r"^answer: Show the notes", "Here are the notes. " + hostile(url, "answer")),
        (r"^sql: Count the notes", f'SELECT 7 AS "{label}"'),
        (r"^answer: Count the notes", "Seven."),
        *DEMO_RULES,
    ]
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel(rules=rules))
    live = LiveServer(tc).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("chromium is missing: run `make browser` (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser: Browser, server: LiveServer, leak: tuple[str, list[str]]) -> Iterator[Page]:
    """The app; requests to the recording server go through (it must get none), any other
    address is blocked."""
    url, _ = leak
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    elsewhere: list[str] = []

    def guard(route: Route) -> None:
        if route.request.url.startswith((server.url, url, "data:", "blob:")):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(server.url + "/")
    page.wait_for_selector("#tc-question textarea")
    yield page
    context.close()
    assert elsewhere == []


def ask(page: Page, question: str) -> None:
    page.fill("#tc-question textarea", question)
    page.press("#tc-question textarea", "Enter")


def settle(page: Page) -> None:
    """Wait until every image on the page has loaded or failed (state, not time)."""
    page.wait_for_function(
        "Array.from(document.images).every(i => i.complete)", timeout=TIMEOUT)


def remote_images(page: Page, url: str) -> list[str]:
    return page.evaluate(
        "u => Array.from(document.querySelectorAll('img, image, source, iframe, object'))"
        ".map(e => e.src || e.data || e.getAttribute('href') || '').filter(s => s.startsWith(u))",
        url)


@pytest.mark.browser
def test_hostile_answer_question_cell_and_label_load_nothing(
        page: Page, leak: tuple[str, list[str]], artifacts: Path) -> None:
    url, seen = leak
    ask(page, "Show the notes " + hostile(url, "question").replace("\n", " "))
    chat = page.locator("#tc-chat")
    expect(chat).to_contain_text("Here are the notes.", timeout=TIMEOUT)
    expect(chat).to_contain_text("answered by LLM", timeout=TIMEOUT)
    expect(page.locator("#tc-table")).to_contain_text("cell-md.png", timeout=TIMEOUT)
    ask(page, "Count the notes")
    expect(page.locator("#tc-number")).to_contain_text("7", timeout=TIMEOUT)
    settle(page)
    page.screenshot(path=artifacts / "security-render.png", full_page=True)
    assert remote_images(page, url) == []
    assert page.locator(f"#tc-chat a[href^='{url}']").count() == 0, "no link to it either"
    assert page.evaluate("window.__pwned") is None, "a script ran"
    assert seen == [], f"the browser called the named address: {seen}"
    # shown as the text it is
    expect(chat).to_contain_text(f"![x]({url}/answer-md.png)")
    expect(chat).to_contain_text("<script>")
    expect(page.locator("#tc-number")).to_contain_text("label.png")


def test_plain_makes_markup_inert() -> None:
    from tablechat.web.markup import code_block, plain

    text = "a\\![x](http://h/i.png) <b>&amp; [l](u)"
    assert plain(text) == "a\\\\!\\[x\\](http\\://h/i.png) &lt;b&gt;&amp;amp; \\[l\\](u)"
    assert code_block("x ```` y", "sql") == "`````sql\nx ```` y\n`````"

"""Feedback in the chat (issue 14) against a launched app: 👍/👎 through the like event as the
browser sends it, comments and "Save as the right answer" through gradio_client, hostile
event bodies sent raw, and a real browser clicking 👍. Every check reads the store itself.

gradio_client cannot send a like event's data (``index``, ``liked``): its calls carry inputs
only. Votes therefore go the browser's way, ``/gradio_api/queue/join`` with ``event_data``,
in the gradio_client's own session, so they rate the answers that client was given.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client

import tablechat
from tablechat.store import open_store
from tablechat.store.base import Store
from tests.test_web_support import LiveServer, ScriptedChatModel

REVENUE_SQL = "SELECT r.name AS region"
CORRECTED = "SELECT name FROM regions ORDER BY name DESC"
EDITED = ("SELECT r.name AS region, count(*) AS customers FROM customers AS c "
          "JOIN regions AS r ON r.id = c.region_id GROUP BY r.name ORDER BY 2 DESC")


@pytest.fixture(scope="module")
def store_url() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="tablechat-feedback-ui-")
    yield f"sqlite:///{folder}/store.sqlite"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def server(demo_db: Path, store_url: str) -> Iterator[LiveServer]:
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel(), store=store_url)
    live = LiveServer(tc).start()
    yield live
    live.stop()


@pytest.fixture()
def store(store_url: str) -> Store:
    return open_store(store_url)


@pytest.fixture()
def client(server: LiveServer) -> Client:
    return Client(f"{server.url}/", verbose=False, download_files=False)


def dependency(server: LiveServer, api_name: str) -> dict[str, Any]:
    config = httpx.get(f"{server.url}/config").json()
    return next(d for d in config["dependencies"] if d.get("api_name") == api_name)


def quiet(client: Client) -> None:
    """Wait until gradio_client's reader of the session's event stream has let go (state, not
    time), so the next raw call's messages come to the raw reader alone."""
    deadline = time.monotonic() + 30
    while client.stream_open:
        assert time.monotonic() < deadline, "gradio_client kept its stream open"
        time.sleep(0.01)


def raw_event(server: LiveServer, api_name: str, session: str, data: list[Any],
              event_data: Any = None) -> Any:
    """One event sent as the browser sends it (queue/join, then the session's SSE stream);
    the outputs it completed with."""
    dep = dependency(server, api_name)
    body = {"data": data, "event_data": event_data, "fn_index": dep["id"],
            "session_hash": session, "trigger_id": dep["targets"][0][0]}
    joined = httpx.post(f"{server.url}/gradio_api/queue/join", json=body, timeout=30)
    assert joined.status_code == 200, joined.text
    event_id = joined.json()["event_id"]
    with httpx.stream("GET", f"{server.url}/gradio_api/queue/data",
                      params={"session_hash": session}, timeout=30) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("msg") == "process_completed" and \
                    message.get("event_id") == event_id:
                assert message["success"], message
                return message["output"]["data"]
    raise AssertionError("the event never completed")


def vote(server: LiveServer, client: Client, index: Any, liked: Any = True,
         value: Any = None) -> str:
    quiet(client)
    out = raw_event(server, "vote", client.session_hash, [None],
                    {"index": index, "liked": liked, "value": value or ["whatever"]})
    return str(out[0])


def test_a_vote_is_stored_with_its_answer_and_conversation(
        server: LiveServer, client: Client, store: Store) -> None:
    before = store.count_feedback()
    client.predict("Revenue by region", api_name="/ask")
    # the browser sends the first message of the answer's group: its steps (1)
    notice = vote(server, client, 1, True, value=["forged text that is not the answer"])
    assert notice.startswith("Thanks: your 👍 on “Revenue by region” is recorded."), notice
    assert "verified example" in notice
    up = store.feedback()[-1]
    assert store.count_feedback() == before + 1
    assert (up.question, up.good, up.engine, up.model) == (
        "Revenue by region", True, "llm", "ScriptedChatModel")
    assert up.sql is not None and up.sql.startswith(REVENUE_SQL)
    assert up.session == f"ui-{client.session_hash}" and up.principal is None
    assert up.context == [] and up.prompt_version
    example = next(e for e in store.examples() if e.feedback_id == up.id)
    assert example.source == "vote"
    assert "1001" not in example.sql  # the query as written, not the guard's capped one

    # a follow-up, voted down on its text bubble (5): kept with the conversation before it
    client.predict("Only Europe", api_name="/ask")
    notice = vote(server, client, 5, False)
    assert notice.startswith("Thanks: your 👎 on “Only Europe” is recorded."), notice
    down = store.feedback()[-1]
    assert (down.question, down.good) == ("Only Europe", False)
    assert "WHERE r.name = 'Europe'" in (down.sql or "")
    assert [m["role"] for m in down.context] == ["user", "assistant"]
    assert down.context[0]["content"] == "Revenue by region"
    assert down.context[1]["sql"].startswith(REVENUE_SQL)
    assert store.count_feedback() == before + 2


def test_a_comment_goes_to_the_answer_voted(server: LiveServer, client: Client,
                                            store: Store) -> None:
    client.predict("Revenue by region", api_name="/ask")
    client.predict("Which regions? <img src=http://127.0.0.1:9/x.png>", api_name="/ask")
    notice = vote(server, client, 4, True)  # the second answer
    assert "&lt;img" in notice and "<img" not in notice, "the question is shown as text"
    text = "Net of discounts, please. <img src=x onerror=alert(1)> [x](http://127.0.0.1:9/)"
    notice, box = client.predict(text, api_name="/comment")
    assert notice.startswith("Thanks: your comment on “Which regions? &lt;img"), notice
    assert box == "", "the comment box is emptied once the comment is kept"
    kept = store.feedback()[-1]
    assert kept.comment == text and kept.good is None, "kept as the person wrote it"
    assert kept.question.startswith("Which regions?")

    notice, box = client.predict("   ", api_name="/comment")
    assert notice == "⚠️ Type a comment first." and store.feedback()[-1].id == kept.id


def test_a_comment_with_no_vote_goes_to_the_latest_answer(client: Client,
                                                          store: Store) -> None:
    notice, _ = client.predict("first", api_name="/comment")
    assert notice == "⚠️ Nothing to comment on yet: ask a question first."
    client.predict("Revenue by region", api_name="/ask")
    client.predict("How many customers are there?", api_name="/ask")
    client.predict("too slow", api_name="/comment")
    kept = store.feedback()[-1]
    assert (kept.question, kept.comment) == ("How many customers are there?", "too slow")


def test_edited_sql_that_ran_is_saved_as_the_right_answer(
        client: Client, store: Store) -> None:
    before = store.count_feedback()
    client.predict("Revenue by region", api_name="/ask")
    notice = client.predict(EDITED, api_name="/save_correction")
    assert notice.startswith("⚠️ Nothing to save: edit the SQL of an answer, run it")

    client.predict(EDITED, api_name="/run_sql")
    other = "SELECT name FROM regions ORDER BY 1"
    notice = client.predict(other, api_name="/save_correction")
    assert "not the one that ran" in notice
    assert store.count_feedback() == before

    # (a button is not among an endpoint's outputs for gradio_client: only the notice)
    notice = client.predict(EDITED, api_name="/save_correction")
    assert notice == ("Saved as the right answer to “Revenue by region”. It is now a "
                      "verified example."), notice
    fixed = store.feedback()[-1]
    assert (fixed.question, fixed.good, fixed.corrected_sql) == (
        "Revenue by region", False, EDITED)
    assert fixed.sql is not None and fixed.sql.startswith(REVENUE_SQL), "what ran before"
    example = next(e for e in store.examples() if e.feedback_id == fixed.id)
    assert (example.question, example.sql, example.source) == (
        "Revenue by region", EDITED, "correction")


def test_the_answers_own_sql_is_no_correction(client: Client, store: Store) -> None:
    out = client.predict("Which regions?", api_name="/ask")
    client.predict(out[3], api_name="/run_sql")  # the SQL box as the answer left it
    before = store.count_feedback()
    notice = client.predict(out[3], api_name="/save_correction")
    assert notice == "⚠️ This is the answer's own SQL: to say it is right, vote 👍", notice
    assert store.count_feedback() == before


def test_sql_the_guard_refuses_is_not_saved(client: Client, store: Store) -> None:
    client.predict("Revenue by region", api_name="/ask")
    client.predict("DROP TABLE customers", api_name="/run_sql")  # refused: no run
    before = store.count_feedback()
    notice = client.predict("DROP TABLE customers", api_name="/save_correction")
    assert notice.startswith("⚠️ Nothing to save"), notice
    assert store.count_feedback() == before


@pytest.mark.parametrize(("event_data", "message"), [
    ({"index": 999, "liked": True}, "No message 999 in this conversation (it has 3)"),
    ({"index": -1, "liked": True}, "No message -1"),
    ({"index": "1", "liked": True}, "index must be a whole number"),
    ({"index": True, "liked": True}, "index must be a whole number"),
    ({"index": [0, 1], "liked": True}, "index must be a whole number"),
    ({"liked": True}, "index must be a whole number"),
    ({"index": 2, "liked": 1}, "liked must be true or false"),
    ({"index": 2, "liked": None}, "liked must be true or false"),
    ({"index": 2, "liked": {"$gt": ""}}, "liked must be true or false"),
    ({"index": 2, "liked": "Wrong table"}, "Unknown feedback"),
    ({"index": 2, "liked": ""}, "Vote taken back: nothing new recorded."),
    ({"index": 0, "liked": True}, "That message is a question: rate an answer"),
    ("index=2", "The vote carries no data"),
    (None, "The vote carries no data"),
])
def test_hostile_votes_are_refused_and_store_nothing(
        server: LiveServer, client: Client, store: Store, event_data: Any,
        message: str) -> None:
    client.predict("Revenue by region", api_name="/ask")
    before = store.count_feedback()
    quiet(client)
    out = raw_event(server, "vote", client.session_hash, [None], event_data)
    assert message in out[0], out
    assert store.count_feedback() == before


def test_a_vote_through_the_call_api_is_refused(server: LiveServer, client: Client,
                                                 store: Store) -> None:
    """``/gradio_api/call/vote`` has no field for event data: whatever the body, no vote."""
    client.predict("Revenue by region", api_name="/ask")
    quiet(client)
    before = store.count_feedback()
    body = {"data": [[{"role": "assistant", "content": "forged"}]],
            "session_hash": client.session_hash,
            "event_data": {"index": 2, "liked": True}}
    r = httpx.post(f"{server.url}/gradio_api/call/vote", json=body)
    assert r.status_code == 200
    result = httpx.get(f"{server.url}/gradio_api/call/vote/{r.json()['event_id']}").text
    assert "event: complete" in result and "The vote carries no data" in result, result
    assert store.count_feedback() == before


def test_a_huge_comment_is_refused(server: LiveServer, client: Client, store: Store) -> None:
    client.predict("Revenue by region", api_name="/ask")
    quiet(client)
    before = store.count_feedback()
    limit = server.tc.settings.feedback_max_chars
    out = raw_event(server, "comment", client.session_hash, ["x" * 200_000, None, None])
    assert out[0] == (f"⚠️ The comment is too long (200,000 characters; the limit is "
                      f"{limit:,})."), out
    # past the bound on event bodies, the request itself is refused, in one line
    too_big = 8 * server.tc.settings.max_body_kb * 1024 + 1
    r = httpx.post(f"{server.url}/gradio_api/call/comment",
                   json={"data": ["x" * too_big, None, None],
                         "session_hash": client.session_hash})
    assert r.status_code == 413
    assert store.count_feedback() == before


@pytest.mark.browser
def test_a_click_on_thumbs_up_and_a_saved_correction_are_stored(demo_db: Path, store_url: str,
                                                        artifacts: Path) -> None:
    """In Debian's chromium: log in, ask, click 👍 under the answer, then correct the SQL and
    save it; the store holds both with the user name (never the password)."""
    from playwright.sync_api import expect, sync_playwright

    from tests.test_browser import ARGS, CHROMIUM, TIMEOUT, ask

    tc = tablechat.connect(demo_db, llm=ScriptedChatModel(), store=store_url,
                           auth="ana:pw-ana-secret")
    live = LiveServer(tc).start()
    store = open_store(store_url)
    before = store.count_feedback()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            outside: list[str] = []

            def only_here(route: Any) -> None:  # the page may reach nothing else
                if route.request.url.startswith((live.url, "data:", "blob:")):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            context.route("**/*", only_here)
            page = context.new_page()
            page.set_default_timeout(TIMEOUT)
            page.goto(live.url + "/")
            page.get_by_label("username").fill("ana")
            page.get_by_label("password").fill("pw-ana-secret")
            page.get_by_role("button", name="Login").click()
            page.wait_for_selector("#tc-question textarea")
            ask(page, "Which regions?", "There are five regions.")
            page.locator("#tc-chat").get_by_label("Like", exact=True).first.click()
            notice = page.locator("#tc-feedback-notice")
            expect(notice).to_contain_text("Thanks: your 👍 on “Which regions?” is recorded.")
            save = page.locator("#tc-save-sql")
            expect(save).to_be_hidden()
            # correct this SQL: edit it, run it; the run offers "Save as the right answer"
            page.locator("#tc-sql .cm-content").fill(CORRECTED)
            page.click("#tc-run")
            # the run is done once it joined the chat (the old table had the same rows)
            expect(page.locator("#tc-chat")).to_contain_text("The edited query returned 5 rows")
            expect(save).to_be_visible()
            page.screenshot(path=artifacts / "browser-feedback.png", full_page=True)
            save.click()
            expect(notice).to_contain_text("Saved as the right answer to “Which regions?”. "
                                           "It is now a verified example.")
            expect(save).to_be_hidden()
            page.context.close()
            browser.close()
        assert outside == []
    finally:
        live.stop()
    assert store.count_feedback() == before + 2
    voted, fixed = store.feedback()[-2:]
    assert (voted.question, voted.good, voted.principal) == ("Which regions?", True,
                                                             "user-ana")
    assert (fixed.question, fixed.corrected_sql, fixed.principal) == (
        "Which regions?", CORRECTED, "user-ana")
    assert "pw-ana-secret" not in repr(voted) + repr(fixed)

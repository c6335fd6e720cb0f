"""Issue 11: no secret leaves the process through events, answers, logs or errors.

- The LLM URL carries credentials (``http://user:sk-secret@...``): status events, answer texts,
  error messages and log records show it without them.
- A DuckDB error that names a server path (here: its temp directory, which cannot be created)
  reaches neither the person nor the model with that path.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path

import duckdb
import pytest
from langchain_core.language_models import FakeListChatModel

import tablechat
from tablechat import events as ev
from tests.support.fake_vllm_client import FakeVLLM
from tests.test_web_support import free_port

SECRET = "sk-secret"


def _leaks(text: str) -> bool:
    return SECRET in text or "user:" in text


@pytest.fixture()
def dead_url() -> str:
    return f"http://user:{SECRET}@127.0.0.1:{free_port()}/v1"


def _log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)


def test_ask_and_stream_keep_the_llm_url_and_its_credentials_out_of_answers(
    demo_db: Path, dead_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tc = tablechat.connect(demo_db, llm=dead_url)
    try:
        answer = tc.ask("how many customers are there?")

        async def collect() -> list[ev.Event]:
            return [e async for e in tc.stream("how many orders are there?")]

        streamed = asyncio.run(collect())
    finally:
        tc.close()
    # the offline engine answered and says why; where the server is (and its key) is the
    # admin's business, shown in the health view, not in the chat (issue 12)
    assert answer.engine == "offline" and "unreachable" in answer.text
    assert "127.0.0.1" not in answer.text
    fallback = [e for e in streamed if isinstance(e, ev.Status) and e.step == "fallback"]
    assert fallback and "127.0.0.1" not in fallback[0].message
    health = tc.health()["llm"]
    assert "***@127.0.0.1" in health["url"] and not _leaks(repr(health))
    for event in [*answer.events, *streamed]:
        assert not _leaks(repr(event)), event
    assert not _leaks(answer.text) and not _leaks(str(answer.error))
    assert not _leaks(_log_text(caplog))


def test_a_live_server_behind_a_url_with_credentials_leaks_them_nowhere(
    demo_db: Path, fake_vllm: FakeVLLM, caplog: pytest.LogCaptureFixture
) -> None:
    """Whichever engine answers (the LLM, or the offline engine when the URL's credentials are
    not usable), neither events, answer nor logs (httpx logs every request's URL) show them."""
    caplog.set_level(logging.DEBUG)
    fake_vllm.script(rules=[
        {"on": "prompt", "match": "You write one",
         "reply": {"content": '{"sql": "SELECT count(*) AS n FROM customers"}'}},
        {"on": "prompt", "match": "Answer the question", "reply": {"content": "5000."}},
    ])
    tc = tablechat.connect(demo_db, llm=f"http://user:{SECRET}@127.0.0.1:{fake_vllm.port}/v1")
    try:
        answer = tc.ask("how many customers are there?")
    finally:
        tc.close()
    assert answer.rows == [(5000,)]
    assert not _leaks(" ".join(repr(e) for e in answer.events))
    assert not _leaks(answer.text + str(answer.error))
    assert not _leaks(_log_text(caplog))


def test_without_an_offline_engine_the_error_shows_no_credentials(
    demo_db: Path, dead_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tc = tablechat.connect(demo_db, llm=dead_url)
    tc._offline = None  # as on a database the offline engine cannot serve
    try:
        answer = tc.ask("how many customers are there?")
    finally:
        tc.close()
    text = " ".join(repr(e) for e in answer.events)
    assert answer.error is not None
    assert not _leaks(text) and not _leaks(answer.text + str(answer.error))
    assert not _leaks(_log_text(caplog))


def _unspillable_db(tmp_path: Path) -> tuple[Path, Path]:
    """A database whose temp directory cannot be created: a file holds its name, so DuckDB's
    error names the server path when a query has to spill."""
    path = tmp_path / "spill.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t AS SELECT i, md5(i::VARCHAR) || md5((i + 7)::VARCHAR) AS s "
                "FROM range(400000) r(i)")
    con.close()
    blocker = tmp_path / "spill.duckdb.tmp"
    blocker.write_text("not a directory")
    return path, blocker


SPILL_SQL = "SELECT s, count(*) AS n FROM t GROUP BY s ORDER BY n DESC, s"
# the repair attempt: another query that spills too (the agent never reruns one that failed)
SPILL_SQL_2 = "SELECT s, count(*) AS c FROM t GROUP BY s ORDER BY c DESC, s"


def test_a_duckdb_error_naming_a_path_reaches_neither_person_nor_model(tmp_path: Path) -> None:
    db, blocker = _unspillable_db(tmp_path)
    prompts: list[str] = []
    model = FakeListChatModel(responses=["data", SPILL_SQL, SPILL_SQL_2])  # router, SQL, SQL
    original = model._call
    model.__dict__["_call"] = lambda messages, *a, **k: (
        prompts.append("\n".join(str(m.content) for m in messages))
        or original(messages, *a, **k)
    )
    tc = tablechat.connect(db, llm=model, memory_limit="20MB", threads=1, max_retries=1)
    try:
        answer = tc.ask("which strings are most common?")
        with pytest.raises(tablechat.SQLExecutionError) as caught:
            tc.run_sql(SPILL_SQL)
    finally:
        tc.close()
    assert answer.error_type == "NoAnswerError" and "IO Error" in str(answer.error)
    assert "Failed to create directory" in str(caught.value)
    shown = [str(answer.error), str(caught.value), *(repr(e) for e in answer.events)]
    for text in shown:
        assert str(blocker) not in text and str(tmp_path) not in text, text
    repair = next(p for p in prompts if "previous query failed" in p)  # the error, fed back
    assert "Failed to create directory" in repair and str(tmp_path) not in repair


def test_a_failing_tokenize_call_logs_no_credentials(caplog: pytest.LogCaptureFixture) -> None:
    """httpx logs each request's URL and words an HTTP error with it, credentials included:
    they go to the server as basic auth, not in the URL."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    from tablechat.agent.budget import TokenCounter

    seen: list[str | None] = []

    class Failing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        caplog.set_level(logging.DEBUG)
        url = f"http://user:{SECRET}@127.0.0.1:{server.server_address[1]}/tokenize"
        counter = TokenCounter(url, "m", timeout=10)
        count = asyncio.run(counter.count("SELECT 1"))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert count > 0 and counter.method != "server"  # estimated locally instead
    logged = _log_text(caplog)
    assert "/tokenize failed" in logged and "127.0.0.1" in logged
    assert not _leaks(logged)
    assert seen == ["Basic " + base64.b64encode(f"user:{SECRET}".encode()).decode()]

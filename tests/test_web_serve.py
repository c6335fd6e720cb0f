"""How the server runs: uvicorn's loop is tablechat's loop (so a question's events never
cross threads), `tablechat serve` stopping cleanly on Ctrl-C and SIGTERM, graceful shutdown,
a clear failure when the port is taken, and sessions that stay apart under concurrency."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from gradio_client import Client
from pydantic import Field

import tablechat
from tablechat import _loop
from tablechat.web.server import BackgroundServer, ServerStartError, create_app
from tests.support.serving import serving
from tests.test_web_support import LiveServer, ScriptedChatModel, live_server

ROOT = Path(__file__).resolve().parents[1]


# --- the loop -------------------------------------------------------------------------------
def test_every_front_answers_on_the_background_loop(demo_db: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel())
    seen: list[tuple[asyncio.AbstractEventLoop, str]] = []
    original = tc.stream

    async def recording(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        seen.append((asyncio.get_running_loop(), threading.current_thread().name))
        async for event in original(*args, **kwargs):
            yield event

    monkeypatch.setattr(tc, "stream", recording)
    question = "How many customers are there?"
    with live_server(tc) as server:
        body = httpx.post(f"{server.url}/api/ask", json={"question": question}, timeout=60)
        assert body.json()["rows"] == [[5000]]
        with httpx.stream("POST", f"{server.url}/api/ask", json={"question": question},
                          headers={"Accept": "text/event-stream"}, timeout=60) as r:
            assert "event: done" in "".join(r.iter_text())
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        reply = client.chat.completions.create(
            model="tablechat", messages=[{"role": "user", "content": question}])
        assert "5000" in (reply.choices[0].message.content or "")
        ui = Client(f"{server.url}/", verbose=False, download_files=False)
        ui.predict(question, api_name="/ask")
    assert len(seen) == 4  # REST JSON, REST SSE, OpenAI, the UI
    loop = _loop.background_loop()
    assert all(seen_loop is loop for seen_loop, _ in seen)
    assert {name for _, name in seen} == {"tablechat-loop"}


def test_the_server_cannot_be_waited_for_on_its_own_loop(demo_db: Path) -> None:
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel())
    with live_server(tc) as server:

        async def wait_inside() -> None:
            server.server.wait(timeout=1)

        with pytest.raises(RuntimeError, match="own loop"):
            _loop.run_sync(wait_inside())
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200


def test_in_flight_questions_finish_on_shutdown(demo_db: Path) -> None:
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel(delay=0.4))
    server = LiveServer(tc).start()
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(httpx.post, f"{server.url}/api/ask",
                               json={"question": "How many customers are there?"}, timeout=60)
                   for _ in range(4)]
        deadline = time.monotonic() + 10
        while server.metrics.value("tablechat_questions_in_flight") < 4:
            assert time.monotonic() < deadline, "the questions never started"
            time.sleep(0.01)
        server.stop()
        answers = [f.result() for f in futures]
    assert [a.status_code for a in answers] == [200] * 4
    assert all(a.json()["rows"] == [[5000]] for a in answers)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz", timeout=2)


def test_a_taken_port_fails_start_and_leaves_the_loop_running(demo_db: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        tc = tablechat.connect(demo_db, llm=ScriptedChatModel())
        server = BackgroundServer(create_app(tc), host="127.0.0.1", port=port,
                                  log_level="critical")
        server.start()
        with pytest.raises(ServerStartError):
            server.wait(timeout=60)
    # the loop every question runs on survived the failed start
    assert [list(r) for r in tc.ask("How many customers are there?").rows] == [[5000]]


# --- sessions under concurrency on one loop -------------------------------------------------
def test_concurrent_api_sessions_never_see_each_other(demo_db: Path) -> None:
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel(delay=0.05))
    sessions = [f"s{i}" for i in range(8)]

    def one(i: int, _name: str, url: str) -> list[list[Any]]:
        with httpx.Client(base_url=url, timeout=60) as http:
            session = http.post("/api/sessions").json()["session"]
            data = "name\n" + "".join(f"pet{j}\n" for j in range(i + 1))
            up = http.post("/api/upload", data={"session": session},
                           files={"file": ("pets.csv", data.encode(), "text/csv")})
            assert up.status_code == 200, up.text
            rows: list[list[Any]] = http.post("/api/ask", json={
                "question": "How many rows are in pets?", "session": session}).json()["rows"]
            return rows

    with live_server(tc) as server, ThreadPoolExecutor(len(sessions)) as pool:
        results = list(pool.map(one, range(len(sessions)), sessions,
                                [server.url] * len(sessions)))
        alone = httpx.post(f"{server.url}/api/ask", timeout=60,
                           json={"question": "How many rows are in pets?"}).json()
    assert results == [[[i + 1]] for i in range(len(sessions))]
    assert alone["rows"] == [] and "pets" in alone["error"]


# --- what the model is asked for -------------------------------------------------------------
class CountingModel(ScriptedChatModel):
    """Counts streamed model calls (``_astream``) beside whole replies."""

    streamed: list[str] = Field(default_factory=list)

    async def _astream(self, messages: Any, stop: Any = None, run_manager: Any = None,
                       **kwargs: Any) -> AsyncIterator[Any]:
        self.streamed.append(str(messages[-1].content)[:40])
        async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
            yield chunk


def test_json_answers_take_the_sentence_in_one_reply_streams_stream_it(demo_db: Path) -> None:
    model = CountingModel(streamed=[])
    question = {"question": "How many customers are there?"}
    with live_server(tablechat.connect(demo_db, llm=model)) as server:
        body = httpx.post(f"{server.url}/api/ask", json=question, timeout=60).json()
        assert body["text"] == "There are 5,000 customers." and body["rows"] == [[5000]]
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        reply = client.chat.completions.create(
            model="tablechat", messages=[{"role": "user", "content": question["question"]}])
        assert (reply.choices[0].message.content or "").startswith("There are 5,000 customers.")
        assert model.streamed == []  # nobody reads the sentence piece by piece: no stream
        with httpx.stream("POST", f"{server.url}/api/ask", json=question, timeout=60,
                          headers={"Accept": "text/event-stream"}) as r:
            text = "".join(r.iter_text())
        assert text.count("event: token") > 1
        assert len(model.streamed) == 1
        chunks = list(client.chat.completions.create(
            model="tablechat", stream=True,
            messages=[{"role": "user", "content": question["question"]}]))
        assert len(chunks) > 4 and len(model.streamed) == 2


# --- `tablechat serve` ----------------------------------------------------------------------
@pytest.fixture()
def serve_process(demo_db: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {**os.environ, "TABLECHAT_LLM_URL": "", "TABLECHAT_AUTH": "",
           "TABLECHAT_API_KEYS": "", "PYTHONPATH": os.pathsep.join(
               [str(ROOT / "app"), os.environ.get("PYTHONPATH", "")])}
    with serving(demo_db, env) as served:
        yield served


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_tablechat_serve_stops_cleanly_on_a_signal(
        serve_process: tuple[subprocess.Popen[str], str], sig: signal.Signals) -> None:
    proc, url = serve_process
    answer = httpx.post(f"{url}/api/ask", json={"question": "How many customers are there?"},
                        timeout=60).json()
    assert answer["rows"] == [[5000]] and answer["engine"] == "offline"
    with httpx.Client(base_url=url, timeout=30) as idle:  # a kept-alive connection stays open
        assert idle.get("/healthz").status_code == 200
        # and a browser tab's heartbeat stream, which never ends by itself
        with httpx.stream("GET", f"{url}/gradio_api/heartbeat/tab1", timeout=30) as beat:
            lines = beat.iter_lines()
            assert next(lines).startswith("data:")
            proc.send_signal(sig)
            try:
                out, _ = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                pytest.fail("tablechat serve did not stop after the signal")
            assert list(lines) is not None  # the stream ended with the server
    # uvicorn's own convention: after a graceful shutdown it re-raises the signal, so SIGTERM
    # ends the process as SIGTERM does (143 in a shell: what Docker, Kubernetes and systemd
    # take for a clean stop) and Ctrl-C ends it with 0
    assert proc.returncode == (0 if sig == signal.SIGINT else -signal.SIGTERM), out
    assert "Traceback" not in out, out
    assert "Finished server process" in out


def test_tablechat_serve_on_a_taken_port_exits_with_an_error(demo_db: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "TABLECHAT_LLM_URL": "", "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "app"), os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run(
            [sys.executable, "-m", "tablechat", "serve", "--db", str(demo_db), "--host",
             "127.0.0.1", "--port", str(port)],
            env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "address already in use" in done.stderr.lower(), done.stderr


def test_gradio_queue_does_not_poll_the_shared_loop_every_millisecond(demo_db: Path) -> None:
    """Gradio looks for queued work every 1 ms on Linux; on the loop every question runs on
    that was ~6 % of a core with nobody asking. UI events still run (test_web_gradio)."""
    from starlette.routing import Mount

    app = create_app(tablechat.connect(demo_db, llm=ScriptedChatModel()))
    gradio_app = next(r.app for r in app.routes if isinstance(r, Mount))
    queue = gradio_app.get_blocks()._queue  # type: ignore[attr-defined]
    assert queue.sleep_when_free >= 0.02
    assert queue.progress_update_sleep_when_free >= 0.1

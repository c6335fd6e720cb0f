"""Class 7: /healthz is cheap, cached and secret-free; the details are behind auth.

Found on main: /healthz (no auth) returned the LLM URL with its credentials, and each call asked
the LLM twice; 60 concurrent calls against a silent LLM queued on one lock, took every worker
thread and pushed /api/schema to 104 s. The LLM here is a TCP server on 127.0.0.1 that accepts
connections and never answers, counting them.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

import tablechat
from tests.test_web_support import LiveServer, ScriptedChatModel

SECRET = "sekrit-llm-key"
CALLS = 60


class SilentLLM:
    """Accepts connections and never answers; ``release()`` closes them (and every later
    one at once), so whoever waits on them gets an error."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._released = False
        self._cond = threading.Condition()
        threading.Thread(target=self._accept, name="silent-llm", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._cond:
                self.accepted += 1
                if self._released:
                    conn.close()
                else:
                    self._held.append(conn)
                self._cond.notify_all()

    def wait_accepted(self, n: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.accepted >= n, timeout=60), self.accepted

    def hang(self) -> None:
        """Hold connections again (after :meth:`release`)."""
        with self._cond:
            self._released = False

    def release(self) -> None:
        with self._cond:
            self._released = True
            held, self._held = self._held, []
        for conn in held:
            conn.close()

    def close(self) -> None:
        self.release()
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def wait_until(check: Callable[[], bool], what: str) -> None:
    """Poll state (not a timing assumption); the deadline only turns a hang into a failure."""
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what} ({check.__doc__})"
        time.sleep(0.02)


@pytest.fixture()
def silent() -> Iterator[SilentLLM]:
    llm = SilentLLM()
    yield llm
    llm.close()


def test_concurrent_healthz_make_one_probe_and_starve_nothing(demo_db: Path,
                                                              silent: SilentLLM) -> None:
    # the probe's own timeout is long: it hangs for the whole test unless released
    tc = tablechat.connect(demo_db, llm=f"http://127.0.0.1:{silent.port}/v1",
                           llm_connect_timeout=120, health_ttl=3600)
    server = LiveServer(tc).start(ready="/api/schema")
    try:
        health = server.app.state.health
        with ThreadPoolExecutor(CALLS) as pool:
            calls = [pool.submit(httpx.get, f"{server.url}/healthz", timeout=120)
                     for _ in range(CALLS)]
            wait_until(lambda: health.waiting == CALLS, "every /healthz waiting on the probe")
            # meanwhile the API answers: the waiting calls hold no worker thread
            schema = httpx.get(f"{server.url}/api/schema", timeout=60)
            assert schema.status_code == 200 and schema.json()["tables"]
            assert health.probes == 1
            assert silent.accepted <= 1, "the start-up warm-up's probe at most"
            silent.release()
            replies = [c.result() for c in calls]
        assert {r.status_code for r in replies} == {200}
        assert all(r.json()["llm"] == {"configured": True, "reachable": False}
                   for r in replies)
        assert health.probes == 1
        assert silent.accepted <= 2, "one probe for 60 calls (and the warm-up's)"
        again = [httpx.get(f"{server.url}/healthz", timeout=60) for _ in range(5)]
        assert {r.status_code for r in again} == {200} and health.probes == 1, "cached"
    finally:
        server.stop()
        tc.close()


def test_no_credential_leaves_in_health_events_or_answers(demo_db: Path, silent: SilentLLM) -> None:
    url = f"http://tc:{SECRET}@127.0.0.1:{silent.port}/v1?api_key={SECRET}"
    tc = tablechat.connect(demo_db, llm=url, llm_connect_timeout=120, health_ttl=3600)
    server = LiveServer(tc).start(ready="/api/schema")
    try:
        silent.release()
        public = httpx.get(f"{server.url}/healthz", timeout=60)
        assert public.status_code == 200 and set(public.json()["llm"]) == {"configured",
                                                                           "reachable"}
        assert str(silent.port) not in public.text, "where the LLM is: only behind auth"
        detail = httpx.get(f"{server.url}/api/health", timeout=60)
        assert detail.json()["llm"]["url"] == (f"http://***@127.0.0.1:{silent.port}/v1"
                                               "?api_key=***")
        # nor in what a question's fallback says about the LLM (status event, answer text)
        question = {"question": "How many customers are there?"}
        asked = httpx.post(f"{server.url}/api/ask", json=question, timeout=60)
        streamed = httpx.post(f"{server.url}/api/ask", json=question, timeout=60,
                              headers={"Accept": "text/event-stream"})
        chat = httpx.post(f"{server.url}/v1/chat/completions", timeout=60, json={
            "model": "tablechat", "messages": [{"role": "user", "content": question[
                "question"]}]})
        assert "unreachable" in asked.json()["text"] and "event: status" in streamed.text
        # where the LLM is stays in the health view: the chat says no URL (issue 12)
        assert f"127.0.0.1:{silent.port}" not in streamed.text + asked.text
        for r in (public, detail, asked, streamed, chat):
            assert r.status_code == 200 and SECRET not in r.text
    finally:
        server.stop()
        tc.close()


def test_a_stale_result_is_served_while_one_refresh_runs(demo_db: Path,
                                                         silent: SilentLLM) -> None:
    tc = tablechat.connect(demo_db, llm=f"http://127.0.0.1:{silent.port}/v1",
                           llm_connect_timeout=120, health_ttl=5)
    server = LiveServer(tc).start(ready="/api/schema")
    try:
        health = server.app.state.health
        silent.release()  # the first probe fails at once: a result to cache
        assert httpx.get(f"{server.url}/healthz", timeout=60).status_code == 200
        assert health.probes == 1
        real = health.clock
        health.clock = lambda: real() + 6  # past the TTL: the next call starts one refresh
        silent.hang()  # and the refresh hangs: no call may wait for it
        replies = [httpx.get(f"{server.url}/healthz", timeout=60) for _ in range(10)]
        assert {r.status_code for r in replies} == {200}
        assert health.probes == 2 and health.waiting == 0
    finally:
        silent.release()
        server.stop()
        tc.close()


def test_details_are_behind_auth(demo_db: Path) -> None:
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel(), api_keys="k-health-1")
    server = LiveServer(tc).start()
    try:
        open_view = httpx.get(f"{server.url}/healthz", timeout=30)
        assert open_view.status_code == 200
        assert open_view.json() == {"ok": True, "engine": "llm", "database": {"ok": True},
                                    "llm": {"configured": True, "reachable": True}}
        assert httpx.get(f"{server.url}/api/health", timeout=30).status_code == 401
        detail = httpx.get(f"{server.url}/api/health", timeout=30,
                           headers={"Authorization": "Bearer k-health-1"})
        assert detail.status_code == 200 and detail.json()["database"]["tables"] > 0
    finally:
        server.stop()
        tc.close()

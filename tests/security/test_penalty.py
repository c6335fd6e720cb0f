"""The penalty box: a client whose requests keep being refused is slowed, then answered 429
with Retry-After before any work, while other clients are served as before (issue 11, "under
attack the server keeps serving others"; bench/bench_attack.py measures it).

Real HTTP against a live server; clients come from their own loopback addresses (127.0.0.x),
the limiter's clock is moved by hand, and nothing waits on time: the box's hold is off
(``penalty_delay=0``) except where a test needs a request to stay held, and that test waits
on the box's own count of held requests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import tablechat
from tablechat.web.limits import MAX_HELD, FailureLimiter, PenaltyBox
from tests.test_web_support import LiveServer, ScriptedChatModel

REFUSALS = 3
WINDOW = 60.0
QUESTION = {"question": "Which regions?"}


def start(demo_db: Path, **settings: object) -> LiveServer:
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel(), penalty_refusals=REFUSALS,
                           penalty_window=WINDOW, **settings)
    return LiveServer(tc).start()


@pytest.fixture(scope="module")
def server(demo_db: Path) -> Iterator[LiveServer]:
    live = start(demo_db, penalty_delay=0, api_keys="good-key")
    yield live
    live.stop()
    live.tc.close()


@pytest.fixture(scope="module")
def clock(server: LiveServer) -> Iterator[list[float]]:
    """The box's clock for the whole module, moved by hand (each test has its own
    addresses)."""
    limiter: FailureLimiter = server.app.state.penalty_limiter
    now = [1_000_000.0]
    real = limiter.clock
    limiter.clock = lambda: now[0]
    yield now
    limiter.clock = real


def client(server: LiveServer, last: int, key: str = "good-key") -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=f"127.0.0.{last}")
    return httpx.Client(base_url=server.url, timeout=60, transport=transport,
                        headers={"Authorization": f"Bearer {key}"})


def malformed(http: httpx.Client) -> httpx.Response:
    return http.post("/api/ask", content=b"{not json", headers={
        "content-type": "application/json"})


def assert_boxed(r: httpx.Response) -> None:
    assert r.status_code == 429, (r.status_code, r.text[:200])
    assert r.json()["error_type"] == "TooManyRefusals"
    assert 0 < int(r.headers["retry-after"]) <= WINDOW


def test_a_refused_client_is_boxed_and_others_are_served(server: LiveServer,
                                                         clock: list[float]) -> None:
    with client(server, 11) as hostile, client(server, 12) as other:
        for _ in range(REFUSALS):
            assert malformed(hostile).status_code == 400
        assert_boxed(hostile.post("/api/ask", json=QUESTION))
        assert_boxed(hostile.get("/healthz"))
        r = other.post("/api/ask", json=QUESTION)
        assert r.status_code == 200 and r.json()["rows"], r.text[:200]


def test_the_box_answers_before_auth_and_before_the_body_is_read(server: LiveServer,
                                                                 clock: list[float]) -> None:
    limiter: FailureLimiter = server.app.state.auth_limiter
    with client(server, 13, key="wrong-key") as hostile:
        for _ in range(REFUSALS):  # wrong credentials count as refusals too
            assert hostile.post("/api/ask", json=QUESTION).status_code == 401
        failures = limiter.count("ip:127.0.0.13")
        assert failures == REFUSALS
        # neither checked (no new auth failure) nor parsed (not a 400, not a 413)
        assert_boxed(hostile.post("/api/ask", json=QUESTION))
        assert_boxed(malformed(hostile))
        assert_boxed(hostile.post("/api/ask", content=b"x" * 2_000_000,
                                  headers={"content-type": "application/json"}))
        assert limiter.count("ip:127.0.0.13") == failures


def test_successes_never_count_and_refusals_age_out(server: LiveServer,
                                                     clock: list[float]) -> None:
    with client(server, 14) as http:
        for _ in range(REFUSALS + 2):
            assert http.post("/api/ask", json=QUESTION).status_code == 200
            assert http.get("/api/schema").status_code == 200
        # a 404 is no refusal (a browser asks for icons that are not there)
        assert http.delete("/api/sessions/unknown-session-id").status_code == 404
        for _ in range(REFUSALS - 1):
            assert malformed(http).status_code == 400
        assert http.post("/api/ask", json=QUESTION).status_code == 200  # one short of the box
        assert malformed(http).status_code == 400
        r = http.post("/api/ask", json=QUESTION)
        assert_boxed(r)
        clock[0] += int(r.headers["retry-after"])  # the oldest refusal is now WINDOW old
        assert http.post("/api/ask", json=QUESTION).status_code == 200


def test_a_boxed_client_waits_and_cannot_pile_up_requests(demo_db: Path) -> None:
    """With a hold, a boxed client's 429s wait; past MAX_HELD waiting at once from one address,
    the next is answered at once and its connection closed. An address never refused is not
    held; one with a refusal is (for delay / PENALTY_REFUSALS)."""
    live = start(demo_db, penalty_delay=30)
    try:
        box = live.app.middleware_stack
        while not isinstance(box, PenaltyBox):
            box = box.app
        limiter: FailureLimiter = live.app.state.penalty_limiter
        for _ in range(REFUSALS):
            limiter.fail("ip:127.0.0.21")
        replies: list[httpx.Response] = []

        def held() -> None:
            try:
                with client(live, 21) as http:
                    replies.append(http.get("/healthz"))
            except httpx.HTTPError:  # the server stopped while it held the request
                pass

        threads = [threading.Thread(target=held, daemon=True) for _ in range(MAX_HELD)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while box._held.get("ip:127.0.0.21", 0) < MAX_HELD:  # wait on state, not on time
            assert time.monotonic() < deadline, "the requests were not held"
            time.sleep(0.01)
        assert replies == []  # still held
        with client(live, 21) as http:
            r = http.get("/healthz")
        assert_boxed(r)
        assert r.headers["connection"] == "close"
        with client(live, 22) as http:
            assert http.get("/healthz").status_code == 200
        assert replies == []
        # one refusal short of the box: the request is handled, after a hold of its own
        limiter.fail("ip:127.0.0.23")
        slowed: list[httpx.Response] = []

        def slow() -> None:
            try:
                with client(live, 23) as http:
                    slowed.append(http.get("/healthz"))
            except httpx.HTTPError:
                pass

        threading.Thread(target=slow, daemon=True).start()
        while box._held.get("ip:127.0.0.23", 0) < 1:
            assert time.monotonic() < deadline, "the request was not slowed"
            time.sleep(0.01)
        assert slowed == []
    finally:
        live.stop()
        live.tc.close()

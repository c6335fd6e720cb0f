"""Class 8: failed logins and failed API credentials are limited per client address and per
user (429 with Retry-After), secrets are compared in constant time, and an API key is not a
UI password.

Found on main: 300 wrong logins in 0.5 s, 300 wrong bearer tokens in 0.3 s, and any user name
with an API key as the password logged in to the UI. Clients come from different loopback
addresses (127.0.0.x: still this machine) so the per-address and per-user limits can be told
apart; the limiter's clock is moved by hand, never slept on.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

import tablechat
from tablechat.web import auth as auth_module
from tablechat.web.auth import AuthConfig
from tablechat.web.limits import FailureLimiter
from tests.test_web_support import LiveServer, ScriptedChatModel

KEY = "sk-good-key-123"
LIMIT = 5
WINDOW = 600


@pytest.fixture(scope="module")
def server(demo_db: Path) -> Iterator[LiveServer]:
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel(), api_keys=f"{KEY},second-key",
                           auth="ana:pw-ana,bo:pw-bo,cy:pw-cy,di:pw-di",
                           auth_max_failures=LIMIT, auth_failure_window=WINDOW)
    live = LiveServer(tc).start()
    yield live
    live.stop()
    tc.close()


@pytest.fixture(scope="module")
def clock(server: LiveServer) -> Iterator[list[float]]:
    """The limiter's clock for the whole module (it only moves forward)."""
    limiter: FailureLimiter = server.app.state.auth_limiter
    now = [1_000_000.0]
    real = limiter.clock
    limiter.clock = lambda: now[0]
    yield now
    limiter.clock = real


def from_address(server: LiveServer, last: int) -> httpx.Client:
    """A client whose connections come from 127.0.0.<last>."""
    transport = httpx.HTTPTransport(local_address=f"127.0.0.{last}")
    return httpx.Client(base_url=server.url, timeout=60, transport=transport)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def assert_limited(r: httpx.Response) -> int:
    assert r.status_code == 429, (r.status_code, r.text[:200])
    wait = int(r.headers["retry-after"])
    assert 0 < wait <= WINDOW
    return wait


def test_wrong_bearer_tokens_are_limited_per_address(server: LiveServer,
                                                     clock: list[float]) -> None:
    with from_address(server, 2) as attacker, from_address(server, 3) as other:
        for i in range(LIMIT):
            r = attacker.get("/api/schema", headers={"Authorization": f"Bearer guess-{i}"})
            assert r.status_code == 401
        wait = assert_limited(attacker.get("/api/schema",
                                           headers={"Authorization": "Bearer guess-x"}))
        assert "too many failed attempts" in attacker.get(
            "/api/schema", headers={"Authorization": "Bearer guess-y"}).json()["error"]
        # locked out: not even the right key is looked at from that address
        assert_limited(attacker.get("/api/schema", headers={"Authorization": f"Bearer {KEY}"}))
        oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0,
                            http_client=from_address(server, 2))
        with pytest.raises(openai.RateLimitError):
            oai.models.list()
        # another address is not affected
        assert other.get("/api/schema", headers={"Authorization": f"Bearer {KEY}"}
                         ).status_code == 200
        clock[0] += wait
        assert attacker.get("/api/schema", headers={"Authorization": f"Bearer {KEY}"}
                            ).status_code == 200
        refusals = server.metrics
        assert refusals.value("tablechat_auth_refusals_total", reason="limited") >= 4
        assert refusals.value("tablechat_auth_refusals_total", reason="wrong") >= LIMIT


def test_failed_logins_are_limited_per_address_and_per_user(server: LiveServer,
                                                            clock: list[float]) -> None:
    with from_address(server, 4) as attacker:
        for _ in range(LIMIT):
            assert attacker.post("/login", data={"username": "ana", "password": "nope"}
                                 ).status_code == 400
        assert_limited(attacker.post("/login", data={"username": "bo", "password": "pw-bo"}))
    # ana's failures also count against ana, from anywhere
    with from_address(server, 5) as elsewhere:
        assert_limited(elsewhere.post("/login", data={"username": "ana", "password": "pw-ana"}))
        assert_limited(elsewhere.get("/api/schema", headers=basic("ana", "pw-ana")))
        ok = elsewhere.post("/login", data={"username": "bo", "password": "pw-bo"})
        assert ok.status_code == 200 and elsewhere.get("/config").status_code == 200
    # a user guessed from many addresses, one try each
    for last in range(10, 10 + LIMIT):
        with from_address(server, last) as one:
            assert one.get("/api/schema", headers=basic("cy", f"guess-{last}")
                           ).status_code == 401
    with from_address(server, 30) as fresh:
        assert_limited(fresh.post("/login", data={"username": "cy", "password": "pw-cy"}))
        clock[0] += WINDOW
        assert fresh.post("/login", data={"username": "cy", "password": "pw-cy"}
                          ).status_code == 200


def test_successes_never_count(server: LiveServer, clock: list[float]) -> None:
    with from_address(server, 40) as user:
        for _ in range(LIMIT * 3):
            assert user.post("/login", data={"username": "di", "password": "pw-di"}
                             ).status_code == 200
            assert user.get("/api/schema", headers={"Authorization": f"Bearer {KEY}"}
                            ).status_code == 200


@pytest.mark.parametrize("user", ["anyone", "ana", "", "admin"])
def test_an_api_key_is_no_ui_password(server: LiveServer, clock: list[float],
                                      user: str) -> None:
    with from_address(server, 50) as web:
        r = web.post("/login", data={"username": user, "password": KEY})
        assert r.status_code in (400, 422), r.text[:200]
        assert web.get("/config").status_code == 401


def test_secrets_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    real = auth_module.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", spy)
    config = AuthConfig(users={"ana": "pw"}, keys=("k1", "a-much-longer-key-2", "k3"))
    for token in ("k1", "k3", "nope", "x" * 1000):
        calls.clear()
        config.key_matches(token)
        assert len(calls) == 3, "every key, whichever matches"
        assert {a for a, b in calls} == {32} and {b for a, b in calls} == {32}, "digests"
    for user in ("ana", "nobody"):
        calls.clear()
        assert not config.login(user, "wrong")
        assert len(calls) == 1, "an unknown user costs a comparison too"
    assert config.login("ana", "pw") and not config.login("nobody", "\0unknown user")

"""Optional auth: with TABLECHAT_AUTH and TABLECHAT_API_KEYS set, every route but /healthz
refuses without credentials (one check per route), and accepts the right ones."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from gradio_client import Client

import tablechat
from tablechat.errors import ConfigurationError
from tablechat.web.auth import AuthConfig
from tests.test_web_support import LiveServer, ScriptedChatModel

KEY = "sk-test-key-1"
USER, PASSWORD = "ana", "s3cret:with:colons"


@pytest.fixture(scope="module")
def server(demo_db: Path) -> Iterator[LiveServer]:
    # every route below is tried with a wrong key: more failures than the brute-force limit
    # allows by default (tests/security/test_bruteforce.py tests that limit)
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel(), auth_max_failures=1000,
                           auth=f"{USER}:{PASSWORD},bo:pw2", api_keys=f"{KEY}, other-key")
    live = LiveServer(tc).start()
    yield live
    live.stop()


BEARER = {"Authorization": f"Bearer {KEY}"}
ROUTES = [
    ("POST", "/api/ask", {"json": {"question": "Which regions?"}}),
    ("POST", "/api/upload", {"files": {"file": ("a.csv", b"a\n1\n")}}),
    ("GET", "/api/schema", {}),
    ("POST", "/api/sessions", {}),
    ("DELETE", "/api/sessions/s", {}),
    ("GET", "/api/health", {}),
    ("GET", "/api/docs", {}),
    ("GET", "/api/openapi.json", {}),
    ("GET", "/v1/models", {}),
    ("POST", "/v1/chat/completions",
     {"json": {"model": "tablechat", "messages": [{"role": "user", "content": "Which regions?"}]}}),
    ("GET", "/metrics", {}),
]
UI_ROUTES = [
    ("GET", "/config", {}),
    ("GET", "/gradio_api/info", {}),
    ("POST", "/gradio_api/queue/join", {"json": {"data": ["Which regions?"], "fn_index": 0,
                                                 "session_hash": "x"}}),
    ("GET", "/gradio_api/queue/data?session_hash=x", {}),
    ("POST", "/gradio_api/upload", {"files": {"files": ("a.csv", b"a\n1\n")}}),
    ("POST", "/gradio_api/cancel", {"json": {"session_hash": "x", "fn_index": 0,
                                             "event_id": "e"}}),
    ("GET", "/gradio_api/heartbeat/x", {}),
    ("POST", "/gradio_api/reset", {"json": {"event_id": "e"}}),
    ("GET", "/gradio_api/file=/etc/hostname", {}),
    ("POST", "/gradio_api/call/ask", {"json": {"data": ["Which regions?"]}}),
    ("GET", "/gradio_api/monitoring", {}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), ROUTES + UI_ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in ROUTES + UI_ROUTES])
def test_every_route_refuses_without_credentials(server: LiveServer, method: str, path: str,
                                                 kwargs: dict) -> None:
    r = httpx.request(method, server.url + path, timeout=30, **kwargs)
    assert r.status_code == 401, (r.status_code, r.text[:200])
    wrong = httpx.request(method, server.url + path, timeout=30,
                          headers={"Authorization": "Bearer wrong"}, **kwargs)
    assert wrong.status_code == 401


@pytest.mark.parametrize(("method", "path", "kwargs"), ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_api_routes_accept_a_bearer_key(server: LiveServer, method: str, path: str,
                                        kwargs: dict) -> None:
    r = httpx.request(method, server.url + path, timeout=60, headers=BEARER, **kwargs)
    # past auth; a session never handed out is unknown to the key holder too
    expected = (404,) if path == "/api/sessions/s" else (200, 201, 204)
    assert r.status_code in expected, (r.status_code, r.text[:200])


def test_api_accepts_the_ui_users_as_basic_auth(server: LiveServer) -> None:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    r = httpx.post(f"{server.url}/api/ask", json={"question": "Which regions?"},
                   headers={"Authorization": f"Basic {token}"}, timeout=60)
    assert r.status_code == 200 and r.json()["rows"]
    bad = base64.b64encode(f"{USER}:nope".encode()).decode()
    assert httpx.get(f"{server.url}/metrics",
                     headers={"Authorization": f"Basic {bad}"}).status_code == 401


def test_healthz_stays_open(server: LiveServer) -> None:
    r = httpx.get(f"{server.url}/healthz")
    assert r.status_code == 200 and r.json()["database"]["ok"]
    assert "name" not in r.json()["database"], "the details are behind auth (/api/health)"


def test_the_page_is_the_login_form_until_logged_in(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as web:
        page = web.get("/")
        assert page.status_code == 200
        assert "Which regions" not in page.text and "auth_required" in page.text
        assert web.post("/login", data={"username": USER, "password": "nope"}
                        ).status_code == 400
        assert web.get("/config").status_code == 401
        assert web.post("/login", data={"username": USER, "password": PASSWORD}
                        ).status_code == 200
        assert web.get("/config").status_code == 200
        assert web.get("/gradio_api/info").status_code == 200
        assert web.get("/metrics").status_code == 401, "a UI login is not an API key"


def test_an_api_key_is_not_a_ui_password(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as web:
        for user in ("anyone", USER, "bo"):
            assert web.post("/login", data={"username": user, "password": KEY}
                            ).status_code == 400
        assert web.get("/config").status_code == 401


def test_gradio_client_and_openai_client_with_credentials(server: LiveServer) -> None:
    client = Client(f"{server.url}/", auth=(USER, PASSWORD), verbose=False)
    out = client.predict("Which regions?", api_name="/ask")
    assert out[3].startswith("SELECT")
    oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in oai.models.list()] == ["tablechat"]
    reply = oai.chat.completions.create(
        model="tablechat", messages=[{"role": "user", "content": "Which regions?"}])
    assert "There are five regions." in (reply.choices[0].message.content or "")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong",
                      max_retries=0).models.list()


def test_api_sessions_are_bound_to_their_key(server: LiveServer) -> None:
    other = {"Authorization": "Bearer other-key"}
    r = httpx.post(f"{server.url}/api/upload", headers=BEARER,
                   files={"file": ("pets.csv", b"name,age\nrex,3\n")}, timeout=30)
    assert r.status_code == 200
    sid = r.json()["session"]
    mine = httpx.get(f"{server.url}/api/schema", params={"session": sid}, headers=BEARER)
    theirs = httpx.get(f"{server.url}/api/schema", params={"session": sid}, headers=other)
    assert "pets" in [t["table"] for t in mine.json()["tables"]]
    assert theirs.status_code == 404
    assert httpx.delete(f"{server.url}/api/sessions/{sid}", headers=other).status_code == 404
    assert httpx.get(f"{server.url}/api/schema", params={"session": sid},
                     headers=BEARER).status_code == 200, "the other key could not end it"


@pytest.mark.parametrize("auth", ["nopassword", "user:", ":pw", "a:b,c"])
def test_malformed_auth_settings_are_configuration_errors(auth: str) -> None:
    with pytest.raises(ConfigurationError, match="TABLECHAT_AUTH"):
        AuthConfig.from_settings(tablechat.Settings(auth=auth))


def test_no_auth_means_open(demo_db: Path) -> None:
    assert not AuthConfig.from_settings(tablechat.Settings()).enabled


def test_openapi_page_declares_the_api_credentials(server: LiveServer) -> None:
    """FastAPI's security schemes on every API route, so /api/docs can authorize; /healthz
    needs none."""
    spec = httpx.get(f"{server.url}/api/openapi.json", headers=BEARER, timeout=30).json()
    schemes = spec["components"]["securitySchemes"]
    assert {name: (s["type"], s["scheme"]) for name, s in schemes.items()} == {
        "apiKey": ("http", "bearer"), "user": ("http", "basic")}
    for method, path, _ in ROUTES:
        if path in ("/api/docs", "/api/openapi.json"):
            continue  # FastAPI's own pages: not operations of the spec
        route = path.replace("/api/sessions/s", "/api/sessions/{session}")
        operation = spec["paths"][route][method.lower()]
        assert {"apiKey": []} in operation["security"] and {"user": []} in operation["security"]
    assert "security" not in spec["paths"]["/healthz"]["get"]


def test_api_routes_without_the_middleware_refuse_everyone(demo_db: Path, tmp_path: Path) -> None:
    """Served without AuthMiddleware (a mistake when wiring the app), the API routes fail
    closed rather than open."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from tablechat.store import open_store
    from tablechat.web.metrics import Metrics
    from tablechat.web.openai_api import openai_router
    from tablechat.web.sessions import ApiSessions

    tc = tablechat.connect(demo_db, llm=ScriptedChatModel())
    app = FastAPI()
    sessions = ApiSessions(tc, store=open_store(f"sqlite:///{tmp_path}/store.sqlite"),
                           shared_dir=tmp_path, idle_seconds=60, max_sessions=10)
    app.include_router(openai_router(tc, Metrics(), sessions))
    with TestClient(app) as client:
        assert client.get("/v1/models", headers=BEARER).status_code == 401

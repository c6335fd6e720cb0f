"""Class 12: REST sessions are ids the server hands out, bound to their caller, and dropped when
idle.

Found on main: with auth off, client B read and deleted client A's ``session=alice`` upload;
and REST sessions never expired (a 2.3 GB upload stayed until someone deleted it).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

import tablechat
from tablechat.web.sessions import ApiSessions
from tests.security.conftest import hand_clock
from tests.test_web_support import LiveServer, ScriptedChatModel, live_server

PETS = ("pets.csv", b"name,age\nrex,3\nfido,5\n", "text/csv")
COUNT = {"question": "How many rows are in pets?"}


SERVER_SETTINGS = {"max_api_sessions": 20}  # the module's server (tests/security/conftest.py)


@pytest.fixture()
def fake_clock(server: LiveServer) -> Iterator[list[float]]:
    """The sessions' clock, moved by hand: expiry without sleeping."""
    yield from hand_clock(server.app.state.sessions)


def client(server: LiveServer, **kwargs: object) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60, **kwargs)  # type: ignore[arg-type]


def test_a_session_cannot_be_named_only_handed_out(server: LiveServer) -> None:
    with client(server) as a, client(server) as b:
        # the attack from the report: A picks a name, B uses the same name
        named = a.post("/api/upload", data={"session": "alice"}, files={"file": PETS})
        assert named.status_code == 404 and "POST /api/sessions" in named.json()["error"]
        up = a.post("/api/upload", files={"file": PETS})
        assert up.status_code == 200
        sid = up.json()["session"]
        assert a.post("/api/ask", json={**COUNT, "session": sid}).json()["rows"] == [[2]]
        for guess in ("alice", "s", sid[:-1], sid.upper()):
            assert b.get("/api/schema", params={"session": guess}).status_code == 404
            assert b.post("/api/ask", json={**COUNT, "session": guess}).status_code == 404
            assert b.delete(f"/api/sessions/{guess}").status_code == 404
        assert a.post("/api/ask", json={**COUNT, "session": sid}).json()["rows"] == [[2]]


def test_session_ids_are_unguessable(server: LiveServer) -> None:
    with client(server) as http:
        ids = [http.post("/api/sessions").json()["session"] for _ in range(10)]
        for sid in ids:
            assert http.delete(f"/api/sessions/{sid}").status_code == 204
    assert len(set(ids)) == len(ids)
    assert all(len(sid) >= 32 and sid.replace("-", "").replace("_", "").isalnum()
               for sid in ids), "at least 192 random bits, URL-safe"


def test_idle_sessions_expire_and_leave_nothing(server: LiveServer,
                                                fake_clock: list[float]) -> None:
    sessions: ApiSessions = server.app.state.sessions
    tc = server.tc
    idle = tc.settings.session_idle_minutes * 60
    with client(server) as http:
        old = http.post("/api/upload", files={"file": PETS}).json()["session"]
        kept = http.post("/api/upload", files={"file": PETS}).json()["session"]
        assert [t.name for t in tc.database.session_tables(sessions.key(old))] == ["pets"]
        fake_clock[0] += idle / 2
        assert http.get("/api/schema", params={"session": kept}).status_code == 200  # used
        fake_clock[0] += idle / 2 + 1  # `old` idle for longer than the limit, `kept` not
        assert sessions.sweep() == 1
        assert tc.database.session_tables(sessions.key(old)) == [], "its upload is dropped"
        assert "pets" not in tc.snapshot(sessions.key(old)).tables
        gone = http.post("/api/ask", json={**COUNT, "session": old})
        assert gone.status_code == 404 and "expired" in gone.json()["error"]
        assert http.post("/api/ask", json={**COUNT, "session": kept}).json()["rows"] == [[2]]
        # no explicit sweep: creating a session sweeps the expired ones
        fake_clock[0] += idle + 1
        assert len(sessions) == 1
        http.post("/api/sessions")
        assert len(sessions) == 1
        assert tc.database.session_tables(sessions.key(kept)) == []


def test_sessions_are_bounded(server: LiveServer, fake_clock: list[float]) -> None:
    limit = server.tc.settings.max_api_sessions
    with client(server) as http:
        for _ in range(limit):
            assert http.post("/api/sessions").status_code == 201
        full = http.post("/api/sessions")
        assert full.status_code == 429 and "too many open sessions" in full.json()["error"]
        assert http.post("/api/upload", files={"file": PETS}).status_code == 429


def test_with_auth_a_session_belongs_to_its_caller(demo_db: Path) -> None:
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel(), auth="ana:pw-ana,bo:pw-bo",
                           api_keys="key-one,key-two")
    basic = {"Authorization": "Basic " + base64.b64encode(b"ana:pw-ana").decode()}
    callers = [{"Authorization": "Bearer key-two"},
               {"Authorization": "Basic " + base64.b64encode(b"bo:pw-bo").decode()}]
    with live_server(tc) as live, client(live) as http:
        sid = http.post("/api/upload", headers=basic, files={"file": PETS}).json()["session"]
        assert http.get("/api/schema", params={"session": sid}, headers=basic
                        ).status_code == 200
        for other in callers:
            assert http.get("/api/schema", params={"session": sid}, headers=other
                            ).status_code == 404
            assert http.post("/api/ask", json={**COUNT, "session": sid}, headers=other
                             ).status_code == 404
            assert http.delete(f"/api/sessions/{sid}", headers=other).status_code == 404
        oai = openai.OpenAI(base_url=f"{live.url}/v1", api_key="key-two", max_retries=0)
        reply = oai.chat.completions.create(model="tablechat", user=sid,
                                            messages=[{"role": "user", "content": COUNT[
                                                "question"]}])
        assert "pets" in (reply.choices[0].message.content or ""), "an error naming pets"
        assert "| 2 |" not in (reply.choices[0].message.content or "")
        assert http.delete(f"/api/sessions/{sid}", headers=basic).status_code == 204
    tc.close()


def test_openai_user_names_a_session_only_when_it_is_one(server: LiveServer) -> None:
    with client(server) as http:
        sid = http.post("/api/upload", files={"file": PETS}).json()["session"]
    oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": COUNT["question"]}]
    mine = oai.chat.completions.create(model="tablechat", user=sid,
                                       messages=messages)  # type: ignore[arg-type]
    assert "| 2 |" in (mine.choices[0].message.content or "")
    other = oai.chat.completions.create(model="tablechat", user="alice",
                                        messages=messages)  # type: ignore[arg-type]
    assert "| 2 |" not in (other.choices[0].message.content or "")

"""POST /api/feedback over real HTTP: a vote and a correction from an authenticated caller,
its principal (never its key) stored; bad bodies are 400 with a one-line message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tablechat
from tablechat.store import SQLStore, close_stores
from tests.test_web_support import LiveServer

KEY = "s3cret-key-for-feedback"
QUESTION = "how many customers are there"


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('fb') / 'store.sqlite'}"
    yield url
    close_stores()


@pytest.fixture(scope="module")
def server(demo_db: Path, store_url: str) -> Iterator[LiveServer]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TABLECHAT_LLM_URL", raising=False)
        tc = tablechat.connect(demo_db, store=store_url, api_keys=KEY, verifiers="named")
    live = LiveServer(tc)
    live.start()
    yield live
    live.stop()
    tc.close()


@pytest.fixture()
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}) as client:
        yield client


def test_a_vote_and_a_correction_over_http(http: httpx.Client, store_url: str) -> None:
    answer = http.post("/api/ask", json={"question": QUESTION}).json()
    assert answer["sql"]
    vote = http.post("/api/feedback", json={"question": QUESTION, "sql": answer["sql"],
                                            "engine": answer["engine"], "good": True,
                                            "comment": "right"})
    assert vote.status_code == 201 and vote.json()["verified"] is True
    fixed = "SELECT count(DISTINCT email) FROM customers"
    session = http.post("/api/sessions").json()["session"]  # sessions are the server's to name
    corr = http.post("/api/feedback", json={"question": QUESTION, "sql": answer["sql"],
                                            "good": False, "correct_sql": fixed,
                                            "history": [{"role": "assistant",
                                                         "content": "hi"}],
                                            "session": session})
    assert corr.status_code == 201 and corr.json()["verified"] is True
    follow = http.post("/api/feedback", json={
        "question": "and in Berlin?", "good": True, "sql": answer["sql"],
        "history": [{"role": "user", "content": QUESTION}]})
    assert follow.status_code == 201 and follow.json()["verified"] is False  # a follow-up
    store = SQLStore(store_url)
    records = {r.id: r for r in store.feedback()}
    first, second = records[vote.json()["id"]], records[corr.json()["id"]]
    assert first.good is True and first.comment == "right" and first.engine == "offline"
    assert second.corrected_sql == fixed and second.context[0]["content"] == "hi"
    assert first.principal and first.principal.startswith("key-")
    assert KEY not in (first.principal or "") and KEY not in (second.session or "")
    assert {e.sql for e in store.examples()} >= {fixed}


@pytest.mark.parametrize(("body", "message"), [
    ({}, "question: Field required"),
    ({"question": QUESTION}, "nothing to record"),
    ({"question": QUESTION, "good": "yes"}, "good: Input should be a valid boolean"),
    ({"question": QUESTION, "correct_sql": "DROP TABLE customers"}, "refused"),
    ({"question": QUESTION, "comment": 5}, "comment: Input should be a valid string"),
    ({"question": QUESTION, "history": "hi", "good": True},
     "history: Input should be a valid list"),
    ([1, 2], "JSON object"),
])
def test_bad_bodies_are_400(http: httpx.Client, body: Any, message: str) -> None:
    reply = http.post("/api/feedback", json=body)
    assert reply.status_code == 400
    assert message in reply.json()["error"]


def test_feedback_needs_the_api_key(server: LiveServer) -> None:
    reply = httpx.post(f"{server.url}/api/feedback", json={"question": QUESTION, "good": True})
    assert reply.status_code == 401

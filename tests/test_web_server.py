"""The server over HTTP: /api/ask (JSON and SSE), uploads and sessions, the OpenAI-compatible
API through the official client, /healthz, /metrics, and bad input that must not hurt it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

import tablechat
from tests.test_web_support import LiveServer, ScriptedChatModel


@pytest.fixture(scope="module")
def server(demo_db: Path) -> Iterator[LiveServer]:
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel(), upload_max_mb=0.05)
    live = LiveServer(tc).start()
    yield live
    live.stop()


@pytest.fixture()
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


# --- /api/ask -------------------------------------------------------------------------------
def test_ask_returns_the_ask_json_shape(http: httpx.Client) -> None:
    r = http.post("/api/ask", json={"question": "How many customers are there?"})
    assert r.status_code == 200
    body = r.json()
    assert body["sql"] == "SELECT COUNT(*) AS customers FROM customers LIMIT 1001"
    assert (body["columns"], body["rows"]) == (["customers"], [[5000]])
    assert body["text"] == "There are 5,000 customers." and body["engine"] == "llm"
    assert body["chart"]["type"] == "number" and body["error"] is None
    assert set(tablechat.Answer(question="q").to_dict()) <= set(body)


def test_ask_streams_typed_events_as_sse(http: httpx.Client) -> None:
    with http.stream("POST", "/api/ask", json={"question": "Customers per segmnt"},
                     headers={"Accept": "text/event-stream"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    events = sse_events(text)
    kinds = [k for k, _ in events]
    assert kinds[0] == "status" and kinds[-1] == "done"
    assert {"sql", "table", "chart", "token", "answer"} <= set(kinds)
    assert all(data["kind"] == kind for kind, data in events)
    retry = [d["message"] for k, d in events if k == "status" and d["step"] == "retry"]
    assert retry and "segmnt" in retry[0]
    table = next(d for k, d in events if k == "table")
    assert table["columns"] == ["segment", "customers"] and len(table["rows"]) == 3


def test_ask_takes_history_with_sql_for_follow_ups(http: httpx.Client) -> None:
    first = http.post("/api/ask", json={"question": "Revenue by region"}).json()
    history = [{"role": "user", "content": "Revenue by region"},
               {"role": "assistant", "content": first["text"], "sql": first["sql"]}]
    follow = http.post("/api/ask", json={"question": "Only Europe", "history": history}).json()
    assert follow["rows"] and [r[0] for r in follow["rows"]] == ["Europe"]
    alone = http.post("/api/ask", json={"question": "Only Europe"}).json()
    assert alone["rows"] == [[1]], "without the history there is nothing to narrow"


@pytest.mark.parametrize(("body", "message"), [
    ({"question": ""}, "empty"),
    ({"question": "   "}, "empty"),
    ({"question": "x" * 100_000}, "too long"),
    ({"question": 42}, "question: Input should be a valid string"),
    ({}, "must be text"),
    ({"question": "Revenue by region", "history": "nope"}, "history"),
    ({"question": "Revenue by region", "session": "s" * 500}, "session"),
])
def test_bad_questions_are_400_with_a_clear_message(http: httpx.Client, body: dict[str, Any],
                                                    message: str) -> None:
    for headers in ({}, {"Accept": "text/event-stream"}):
        r = http.post("/api/ask", json=body, headers=headers)
        assert r.status_code == 400, r.text
        assert message in r.json()["error"]
    assert http.post("/api/ask", json={"question": "Which regions?"}).status_code == 200


def test_a_body_that_is_not_json_is_400(http: httpx.Client) -> None:
    r = http.post("/api/ask", content=b"\x00\xff not json",
                  headers={"content-type": "application/json"})
    assert r.status_code == 400 and "UTF-8" in r.json()["error"]
    r = http.post("/api/ask", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    assert http.post("/api/ask", json=["a list"]).status_code == 400


def test_unsafe_generated_sql_ends_in_an_error_not_a_write(http: httpx.Client,
                                                           demo_db: Path) -> None:
    before = hashlib.sha256(demo_db.read_bytes()).hexdigest()
    body = http.post("/api/ask", json={"question": "Drop everything"}).json()
    assert body["error"] and body["rows"] == []
    assert hashlib.sha256(demo_db.read_bytes()).hexdigest() == before
    assert http.get("/healthz").json()["database"]["ok"] is True


# --- uploads and sessions over REST ---------------------------------------------------------
def test_api_uploads_belong_to_one_session(http: httpx.Client) -> None:
    r = http.post("/api/upload",
                  files={"file": ("pets.csv", b"name,age\nrex,3\nfido,5\n", "text/csv")})
    assert r.status_code == 200, r.text
    assert r.json()["table"] == "pets" and r.json()["rows"] == 2
    alice = r.json()["session"]
    assert len(alice) >= 32, "an upload without a session gets a new, unguessable one"
    bob = http.post("/api/sessions").json()["session"]
    ask = {"question": "How many rows are in pets?"}
    assert http.post("/api/ask", json={**ask, "session": alice}).json()["rows"] == [[2]]
    other = http.post("/api/ask", json={**ask, "session": bob}).json()
    assert other["rows"] == [] and "pets" in other["error"]
    assert http.post("/api/ask", json=ask).json()["rows"] == []
    tables = [t["table"] for t in http.get("/api/schema", params={"session": alice})
              .json()["tables"]]
    assert "pets" in tables
    assert "pets" not in [t["table"] for t in http.get("/api/schema").json()["tables"]]
    assert http.delete(f"/api/sessions/{alice}").status_code == 204
    gone = http.post("/api/ask", json={**ask, "session": alice})
    assert gone.status_code == 404 and "unknown or expired session" in gone.json()["error"]


@pytest.mark.parametrize(("name", "data", "status", "message"), [
    ("evil.csv", bytes(range(256)) * 20, 400, "binary data"),
    ("big.csv", b"n\n" + b"1234567890\n" * 10_000, 413, "upload limit"),
    ("x.parquet", b"not parquet", 400, "not a Parquet file"),
    ("notes.docx", b"hello", 400, "unsupported file type"),
])
def test_bad_api_uploads_are_refused(http: httpx.Client, name: str, data: bytes, status: int,
                                     message: str) -> None:
    r = http.post("/api/upload", files={"file": (name, data)})
    assert r.status_code == status and message in r.json()["error"]
    assert http.get("/healthz").status_code == 200


# --- OpenAI-compatible API through the official client --------------------------------------
@pytest.fixture()
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_openai_client_lists_the_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["tablechat"]


def test_openai_client_gets_sentence_sql_and_table(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="tablechat", messages=[{"role": "system", "content": "be brief"},
                                     {"role": "user", "content": "Revenue by region"}])
    content = reply.choices[0].message.content or ""
    assert content.startswith("Europe brings the most revenue.")
    assert "```sql\nSELECT r.name AS region" in content
    assert "| region | revenue |" in content and "| Europe | 4751697.72 |" in content
    assert reply.choices[0].finish_reason == "stop" and reply.model == "tablechat"


def test_openai_client_streams_the_same_content(client: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "Customers per segmnt"}]
    whole = client.chat.completions.create(model="tablechat", messages=messages)
    stream = client.chat.completions.create(model="tablechat", messages=messages, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage is not None and not chunks[-1].choices
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)


def test_openai_history_carries_the_sql_of_earlier_answers(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model="tablechat", messages=[{"role": "user", "content": "Revenue by region"}])
    follow = client.chat.completions.create(model="tablechat", messages=[
        {"role": "user", "content": "Revenue by region"},
        {"role": "assistant", "content": first.choices[0].message.content or ""},
        {"role": "user", "content": [{"type": "text", "text": "Only Europe"}]},
    ])
    content = follow.choices[0].message.content or ""
    assert "WHERE r.name = 'Europe'" in content and "North America" not in content


def test_openai_replies_hold_what_openai_replies_hold(client: openai.OpenAI,
                                                      http: httpx.Client) -> None:
    """The replies are the SDK's own types: the official client parses them, and they carry
    the fields OpenAI's replies carry (a message's ``refusal`` and ``annotations``)."""
    messages: Any = [{"role": "user", "content": "How many customers are there?"}]
    raw = client.chat.completions.with_raw_response.create(model="tablechat", messages=messages)
    reply = raw.parse()
    message = raw.http_response.json()["choices"][0]["message"]
    assert message["refusal"] is None and message["annotations"] == []
    assert reply.usage is not None and reply.usage.total_tokens == (
        reply.usage.prompt_tokens + reply.usage.completion_tokens)
    assert reply.model_extra and reply.model_extra["tablechat"]["rows"] == [[5000]]

    with http.stream("POST", "/v1/chat/completions", json={
            "model": "tablechat", "messages": messages, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        blocks = "".join(r.iter_text()).split("\n\n")
    assert blocks[-2:] == ["data: [DONE]", ""]
    chunks = [ChatCompletionChunk.model_validate_json(b.removeprefix("data: "))
              for b in blocks[:-2]]
    first = json.loads(blocks[0].removeprefix("data: "))["choices"][0]["delta"]
    assert first == {"role": "assistant", "content": "", "refusal": None}
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == \
        reply.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_openapi_page_says_which_routes_stream(http: httpx.Client) -> None:
    paths = http.get("/api/openapi.json").json()["paths"]
    for path in ("/api/ask", "/v1/chat/completions"):
        content = paths[path]["post"]["responses"]["200"]["content"]
        assert {"application/json", "text/event-stream"} <= set(content), path


@pytest.mark.parametrize("messages", [
    [], [{"role": "user", "content": ""}], [{"role": "user", "content": "x" * 100_000}],
    [{"role": "assistant", "content": "hi"}], "nope",
])
def test_openai_bad_requests_raise_bad_request(client: openai.OpenAI, messages: Any) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tablechat", messages=messages)


# --- health and metrics ---------------------------------------------------------------------
def test_healthz_reports_database_and_llm(http: httpx.Client) -> None:
    body = http.get("/healthz").json()
    assert body["database"]["ok"] and body["llm"]["configured"] and body["engine"] == "llm"
    detail = http.get("/api/health").json()
    assert detail["database"]["name"] == "demo" and detail["llm"]["model"] == "ScriptedChatModel"


def test_metrics_are_prometheus_text(http: httpx.Client) -> None:
    http.post("/api/ask", json={"question": "Customers per segmnt"})
    http.post("/api/ask", json={"question": ""})
    r = http.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    for name, kind in [("tablechat_questions_total", "counter"),
                       ("tablechat_question_seconds", "histogram"),
                       ("tablechat_sql_retries_total", "counter"),
                       ("tablechat_question_errors_total", "counter")]:
        assert f"# TYPE {name} {kind}" in text
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line and not line.startswith("#")}
    assert values['tablechat_questions_total{engine="llm",front="api",outcome="ok"}'] >= 1
    assert values['tablechat_sql_retries_total{front="api"}'] >= 1
    assert values['tablechat_bad_requests_total{front="api"}'] >= 1
    assert values['tablechat_question_seconds_count{front="api"}'] >= 1

"""Class 11: every malformed body gets a 4xx with a one-line reason: never a 500, never a
traceback or a flood of log lines, never a server path.

Found on main: deeply nested JSON, a 100,000-digit number or a lone ``\\ud800`` in /api/ask
or /v1/chat/completions gave HTTP 500. The routes are read from the app's own OpenAPI
description, so a new route without a case here fails the first test.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tablechat
from tests.test_web_support import LiveServer, ScriptedChatModel

ROOT = Path(__file__).resolve().parents[2]
BODY_KB = 64

# what each route takes: "json", "multipart", or "none" (query and path only)
ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/api/ask"): "json",
    ("POST", "/v1/chat/completions"): "json",
    ("POST", "/api/feedback"): "json",
    ("POST", "/api/upload"): "multipart",
    ("POST", "/api/sessions"): "none",
    ("POST", "/api/export"): "json",
    ("GET", "/api/exports/{file_id}"): "none",
    ("DELETE", "/api/sessions/{session}"): "none",
    ("GET", "/api/schema"): "none",
    ("GET", "/api/health"): "none",
    ("GET", "/healthz"): "none",
    ("GET", "/metrics"): "none",
    ("GET", "/v1/models"): "none",
}
JSON_ROUTES = [(m, p) for (m, p), kind in ROUTES.items() if kind == "json"]
NO_BODY_ROUTES = [(m, p) for (m, p), kind in ROUTES.items() if kind == "none"]

DEEP = b'{"question": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
DEEP_OBJECTS = b'{"a":' * 50 + b"1" + b"}" * 50
HOSTILE_JSON: dict[str, bytes] = {
    "nested 100,000 deep": DEEP,
    "nested objects 50 deep": DEEP_OBJECTS,
    "100,000-digit number": b'{"question": "hi", "history": [' + b"9" * 100_000 + b"]}",
    "100,000-digit float": b'{"question": 1.' + b"5" * 100_000 + b"}",
    "lone surrogate in text": b'{"question": "hi \\ud800"}',
    "lone surrogate in a key": b'{"\\udfff": 1, "question": "hi"}',
    "lone surrogate in a message": b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
    "NaN": b'{"question": NaN}',
    "not JSON": b"{question: hi",
    "not UTF-8": b'{"question": "\xff\xfe"}',
    "empty": b"",
    "only spaces": b"   ",
    "null": b"null",
    "a list": b"[1, 2]",
    "a string": b'"How many customers?"',
    "question a list": b'{"question": ["a"], "messages": "x"}',
    "history an object": b'{"question": "hi", "history": {"a": 1}, "messages": {}}',
    "session a number": b'{"question": "hi", "session": 5, "messages": [5]}',
    "stream a string": b'{"question": "hi", "stream": "yes", "messages": [], "user": 5}',
    "too many turns": json.dumps({"question": "hi", "history": [{}] * 500,
                                  "messages": [{"role": "user", "content": "x"}] * 500}).encode(),
    "over the body limit": json.dumps({"question": "x" * (BODY_KB * 1024 + 10)}).encode(),
}


@pytest.fixture(scope="module")
def server(demo_db: Path) -> Iterator[LiveServer]:
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel(), max_body_kb=BODY_KB,
                           upload_max_mb=0.05)
    live = LiveServer(tc).start()
    yield live
    live.stop()
    tc.close()


@pytest.fixture()
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture()
def quiet_logs() -> Iterator[None]:
    """No error or traceback logged while a bad request is refused, and at most one warning
    (python-multipart warns once of a garbled part) (uvicorn's loggers do not propagate to
    the root: listen on both)."""
    handler = _Records()
    loggers = [logging.getLogger(), logging.getLogger("uvicorn")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    loud = [r for r in handler.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, [r.getMessage()[:200] for r in loud]
    warnings = [r for r in handler.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 1, [r.getMessage()[:200] for r in warnings]


def error_text(r: httpx.Response) -> str:
    body: Any = r.json()
    error = body.get("error") if isinstance(body, dict) else None
    text = error.get("message") if isinstance(error, dict) else error
    assert isinstance(text, str), r.text[:300]
    return text


def assert_refused(r: httpx.Response, *statuses: int) -> str:
    """A 4xx (one of ``statuses`` when given) whose reason is one short line that names no
    server path."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    if statuses:
        assert r.status_code in statuses, (r.status_code, r.text[:300])
    text = error_text(r)
    assert text and "\n" not in text and len(text) < 300, text
    assert "Traceback" not in r.text
    for leak in (str(ROOT), "/root", "/tmp/", "/usr/", "site-packages", "/proc/"):
        assert leak not in r.text, (leak, r.text[:300])
    return text


def test_every_route_of_the_app_is_covered(server: LiveServer) -> None:
    paths = server.app.openapi()["paths"]
    found = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert found == set(ROUTES)


@pytest.mark.parametrize("body", list(HOSTILE_JSON.values()), ids=list(HOSTILE_JSON))
@pytest.mark.parametrize(("method", "path"), JSON_ROUTES, ids=[p for _, p in JSON_ROUTES])
@pytest.mark.parametrize("accept", ["json", "sse"])
def test_hostile_json_is_refused_in_one_line(http: httpx.Client, quiet_logs: None, method: str,
                                             path: str, body: bytes, accept: str) -> None:
    headers = {"content-type": "application/json"}
    if accept == "sse":
        headers["accept"] = "text/event-stream"
    r = http.request(method, path, content=body, headers=headers)
    assert_refused(r, 413 if len(body) > BODY_KB * 1024 else 400)
    assert http.post("/api/ask", json={"question": "Which regions?"}).status_code == 200


def test_a_body_past_the_limit_is_refused_before_it_is_read(http: httpx.Client,
                                                            quiet_logs: None) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"question": "'
        for _ in range(BODY_KB * 4):
            yield b"x" * 1024
        yield b'"}'

    for path in ("/api/ask", "/v1/chat/completions"):
        text = assert_refused(http.post(path, content=chunks(),
                                        headers={"content-type": "application/json"}), 413)
        assert f"{BODY_KB:,} KB" in text
    # a declared terabyte is refused from the headers alone (raw: httpx would not send it)
    port = int(http.base_url.port or 80)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as raw:
        raw.sendall(b"POST /api/ask HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000000000000\r\n\r\n{}")
        reply = b""
        while b"\r\n\r\n" not in reply:
            data = raw.recv(4096)
            assert data, reply
            reply += data
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]


def test_a_client_sending_a_large_body_reads_its_413(http: httpx.Client,
                                                     quiet_logs: None) -> None:
    """Found by bench_attack: answered and closed while the client was still sending, a 5 MB
    body got a connection reset instead of its 413 (the kernel answers bytes nobody will read
    with a RST). The refused body is read and dropped first, within bounds."""
    body = b'{"question": "' + b"x" * 5_000_000 + b'"}'
    port = int(http.base_url.port or 80)
    for path in (b"/api/ask", b"/v1/chat/completions"):
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", port), timeout=60) as raw:
                raw.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: t\r\nContent-Type: "
                            b"application/json\r\nContent-Length: " + str(len(body)).encode()
                            + b"\r\n\r\n" + body)
                reply = b""
                while b"KB" not in reply:
                    data = raw.recv(4096)
                    assert data, reply
                    reply += data
            assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
            assert f"{BODY_KB:,} KB".encode() in reply


MULTIPART: dict[str, tuple[str, bytes]] = {
    "no boundary": ("multipart/form-data", b"--x\r\n\r\n"),
    "garbage": ("multipart/form-data; boundary=xx", b"\x00\xff garbage \r\n--xx"),
    "unterminated part": ("multipart/form-data; boundary=xx",
                          b'--xx\r\nContent-Disposition: form-data; name="file"; '
                          b'filename="a.csv"\r\n\r\na,b\n1,2'),
    "no file field": ("multipart/form-data; boundary=xx",
                      b'--xx\r\nContent-Disposition: form-data; name="session"\r\n\r\n'
                      b"abc\r\n--xx--\r\n"),
    "two files": ("multipart/form-data; boundary=xx",
                  b'--xx\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n'
                  b'\r\na\n1\n\r\n--xx\r\nContent-Disposition: form-data; name="file"; '
                  b'filename="b.csv"\r\n\r\nb\n2\n\r\n--xx--\r\n'),
    "too many fields": ("multipart/form-data; boundary=xx", b"".join(
        b'--xx\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i
        for i in range(50)) + b"--xx--\r\n"),
    "session a file": ("multipart/form-data; boundary=xx",
                       b'--xx\r\nContent-Disposition: form-data; name="file"; '
                       b'filename="a.csv"\r\n\r\na\n1\n\r\n--xx\r\nContent-Disposition: '
                       b'form-data; name="session"; filename="s"\r\n\r\nabc\r\n--xx--\r\n'),
    "JSON instead": ("application/json", b'{"file": "a.csv"}'),
    "no content type": ("", b"a,b\n1,2\n"),
    "over the body limit": ("multipart/form-data; boundary=xx",
                            b"--xx\r\n" + b"y" * (2 * 1024 * 1024)),
}


@pytest.mark.parametrize(("content_type", "body"), list(MULTIPART.values()),
                         ids=list(MULTIPART))
def test_garbage_uploads_are_refused_in_one_line(http: httpx.Client, quiet_logs: None,
                                                 content_type: str, body: bytes) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = http.post("/api/upload", content=body, headers=headers)
    assert_refused(r)
    ok = http.post("/api/upload", files={"file": ("ok.csv", b"a\n1\n")})
    assert ok.status_code == 200


@pytest.mark.parametrize(("method", "path"), NO_BODY_ROUTES,
                         ids=[f"{m} {p}" for m, p in NO_BODY_ROUTES])
def test_routes_without_a_body_refuse_bad_parameters_and_big_bodies(
        http: httpx.Client, quiet_logs: None, method: str, path: str) -> None:
    odd = "%ED%A0%80" + "s" * 300  # a lone surrogate's UTF-8 bytes, and too long
    r = http.request(method, path.replace("{session}", odd) + f"?session={odd}")
    if path in ("/api/schema", "/api/sessions/{session}"):
        assert_refused(r)
    else:
        assert r.status_code < 500, r.text[:300]
    if path.startswith(("/api/", "/v1/")):
        big = http.request(method, path.replace("{session}", "s"),
                           content=b"z" * (BODY_KB * 1024 + 1))
        assert_refused(big, 413)

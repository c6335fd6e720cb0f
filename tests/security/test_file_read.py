"""Issue 11, class 1: no Gradio event reads a server file, and no request makes the server
fetch a URL. Raw HTTP, as an attacker sends it, against every event the UI has (named or
private), then the routes that would serve what leaked: deep links and ``/file=``."""

from __future__ import annotations

import http.server as stdlib_http
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from gradio_client import Client, handle_file
from starlette.routing import Mount

import tablechat
from tests.test_web_support import LiveServer, ScriptedChatModel

PASSWD = "/etc/passwd"
ENVIRON = "/proc/self/environ"


@pytest.fixture(scope="module")
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


class Recorder(stdlib_http.BaseHTTPRequestHandler):
    """A local web server that stands for any outside address: it records every request."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = b"fetched"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def outside(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[str]]]:
    """(base URL, requests seen) of a recording server on 127.0.0.1. Gradio fetches only
    public addresses, and this machine has none: 127.0.0.1 is made to count as public, as a
    real host would be on a server with internet access."""
    import safehttpx

    monkeypatch.setattr(safehttpx, "is_public_ip", lambda ip: True)
    seen: ClassVar[list[str]] = []
    handler = type("Handler", (Recorder,), {"seen": seen})
    httpd = stdlib_http.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


def file_data(path: str) -> dict[str, Any]:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def targets(server: LiveServer) -> list[str]:
    return [ENVIRON, PASSWD, str(server.tc.database.path)]  # type: ignore[attr-defined]


def copies(cache: Path, names: set[str]) -> list[Path]:
    """Files in Gradio's cache named like a target (Gradio keeps the base name)."""
    return [p for p in cache.rglob("*") if p.is_file() and p.name in names]


def events(http: httpx.Client) -> list[dict[str, Any]]:
    """Every event of the UI, named or private, from the page's config."""
    config = http.get("/config").json()
    deps = config["dependencies"]
    assert len(deps) >= 10, "the UI's events"
    return [{"fn_index": d["id"], "inputs": len(d["inputs"]), "api_name": d.get("api_name")}
            for d in deps]


def run_queued(http: httpx.Client, fn_index: int, data: list[Any], session: str) -> str:
    """Join the queue as the browser does; the text of the event's stream until it ends
    (or the refusal of the join itself)."""
    joined = http.post("/gradio_api/queue/join", json={
        "data": data, "fn_index": fn_index, "session_hash": session,
        "event_data": None, "trigger_id": None})
    if joined.status_code != 200:
        return joined.text
    lines: list[str] = []
    with http.stream("GET", "/gradio_api/queue/data",
                     params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            lines.append(line)
            if "process_completed" in line or "close_stream" in line:
                break
    return "\n".join(lines)


def leaked(text: str, cache: Path) -> list[str]:
    """Paths into the cache that a response names."""
    return [w.strip("'\",\\") for w in text.replace("\\/", "/").split()
            if str(cache) in w]


def test_upload_event_copies_no_server_file(server: LiveServer, http: httpx.Client,
                                            cache: Path) -> None:
    """The published attack: POST /gradio_api/call/upload with a FileData naming a server
    file, then the event stream, the deep link and /file= for whatever was cached."""
    secrets = targets(server)
    for n, target in enumerate(secrets):
        direct = http.get(f"/gradio_api/file={target}")
        assert direct.status_code in (403, 404) and "root:x:0:0" not in direct.text
        session = f"up{n}"
        call = http.post("/gradio_api/call/upload",
                         json={"data": [file_data(target)], "session_hash": session})
        text = call.text
        if call.status_code == 200:
            text += http.get(f"/gradio_api/call/upload/{call.json()['event_id']}").text
        else:
            assert call.status_code in (400, 403), call.text
        link = http.get("/gradio_api/deep_link", params={"session_hash": session})
        text += link.text
        if link.status_code == 200 and link.json():
            state = cache / "deep_links" / link.json() / "state.json"
            text += state.read_text() if state.exists() else ""
        for path in leaked(text, cache):
            served = http.get(f"/gradio_api/file={path}")
            assert served.status_code != 200, f"{target} served as {path}"
    assert copies(cache, {Path(t).name for t in secrets}) == []
    assert "root:x:0:0" not in text


def test_no_event_copies_a_server_file(server: LiveServer, http: httpx.Client,
                                       cache: Path) -> None:
    """Every event (the private ones too: they are endpoints all the same) with a server
    file in every input: nothing reaches the cache."""
    secrets = targets(server)
    found = events(http)
    for ev in found:
        for n, target in enumerate(secrets):
            out = run_queued(http, ev["fn_index"], [file_data(target)] * ev["inputs"],
                             f"ev{ev['fn_index']}-{n}")
            assert "root:x:0:0" not in out
            for path in leaked(out, cache):
                assert http.get(f"/gradio_api/file={path}").status_code != 200, path
    assert copies(cache, {Path(t).name for t in secrets}) == []


def test_file_route_fetches_no_url(http: httpx.Client,
                                   outside: tuple[str, list[str]]) -> None:
    base, seen = outside
    for path in (f"/gradio_api/file={base}/x", f"/gradio_api/file/{base}/y",
                 f"/gradio_api/file={base.replace('http', 'https')}/z"):
        got = http.get(path)
        assert got.status_code == 403, path
        assert "fetched" not in got.text
    assert seen == []


def test_no_event_fetches_a_url(server: LiveServer, http: httpx.Client, cache: Path,
                                outside: tuple[str, list[str]]) -> None:
    """A FileData whose path is a URL: Gradio would download it into its cache."""
    base, seen = outside
    for ev in events(http):
        out = run_queued(http, ev["fn_index"], [file_data(f"{base}/e{ev['fn_index']}.csv")]
                         * ev["inputs"], f"url{ev['fn_index']}")
        assert "fetched" not in out
    call = http.post("/gradio_api/call/upload",
                     json={"data": [file_data(f"{base}/up.csv")], "session_hash": "url-up"})
    if call.status_code == 200:
        http.get(f"/gradio_api/call/upload/{call.json()['event_id']}")
    assert seen == []


def test_refusal_is_one_clear_line(http: httpx.Client) -> None:
    got = http.post("/gradio_api/call/upload",
                    json={"data": [file_data(PASSWD)], "session_hash": "clear"})
    assert got.status_code == 400
    assert got.json() == {"detail": "a file in a request must be one uploaded to this server"}
    assert "/etc" not in got.text


def test_a_real_upload_still_works(server: LiveServer, cache: Path) -> None:
    """The browser's way (gradio_client uploads the bytes first, then names that file)."""
    src = cache.parent / "pets.csv"
    src.write_text("name,age\nrex,3\nfelix,5\n")
    client = Client(f"{server.url}/", verbose=False, download_files=False)
    out = client.predict(handle_file(str(src)), api_name="/upload")
    assert "Uploaded **pets**" in out[0]
    assert "2 rows" in out[0]
    # the uploaded copy goes with the session (not at once: another session may have sent
    # the same bytes, which Gradio keeps at the same path, and not read them yet)
    assert [p for p in cache.rglob("pets.csv")]
    server.app.state.ui_sessions.end_all()
    assert not [p for p in cache.rglob("pets.csv")]


def test_handler_refuses_a_path_outside_the_upload_folder(server: LiveServer) -> None:
    """Even if Gradio let a path through, the upload handler reads only uploaded files."""
    gradio_app = next(r.app for r in server.app.routes if isinstance(r, Mount))
    blocks = gradio_app.get_blocks()
    fn = next(f for f in blocks.fns.values() if f.api_name == "upload")

    class Request:
        session_hash = "direct"

    out = fn.fn(PASSWD, Request())
    assert out[0].startswith("⚠️ Upload the file through this page")


def test_a_logged_in_user_reads_no_server_file_either(demo_db: Path, cache: Path) -> None:
    """With auth on: anonymous requests are refused first; a logged-in user gets no further."""
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel(), auth="ana:pw")
    live = LiveServer(tc).start()
    try:
        with httpx.Client(base_url=live.url, timeout=30) as web:
            attack = {"data": [file_data(PASSWD)], "session_hash": "auth1"}
            assert web.post("/gradio_api/call/upload", json=attack).status_code == 401
            assert web.post("/login", data={"username": "ana", "password": "pw"}
                            ).status_code == 200
            got = web.post("/gradio_api/call/upload", json=attack)
            if got.status_code == 200:
                got = web.get(f"/gradio_api/call/upload/{got.json()['event_id']}")
            assert "root:x:0:0" not in got.text
            assert got.status_code == 400
    finally:
        live.stop()
    assert copies(cache, {"passwd"}) == []

"""Issue 11: idle UI sessions expire and leave nothing behind.

Found on main: a Gradio session that never unloads (a script calling ``/gradio_api/call/<fn>``,
a client without its heartbeat stream, a tab killed with its network) kept its DuckDB cursor,
its uploaded temporary tables, its result files and Gradio's state for the life of the
process: 200 scripted sessions with one small upload each kept 200 cursors and their tables.
The sessions' clock is moved by hand: expiry without sleeping.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client, handle_file

from tablechat.errors import TableChatError
from tablechat.web.ui_sessions import UiSessions
from tests.security.conftest import hand_clock
from tests.test_web_support import LiveServer

PETS = b"name,age\nrex,3\nfido,5\nkitty,2\n"
RAW_SESSIONS = 200


@pytest.fixture()
def clock(server: LiveServer) -> Iterator[list[float]]:
    """The UI sessions' clock, moved by hand; every session ended before and after."""
    yield from hand_clock(server.app.state.ui_sessions)


def live_sessions(server: LiveServer) -> int:
    """Sessions the database layer holds a cursor for."""
    return len(server.tc.database._sessions)


def temp_table_bytes(server: LiveServer) -> int:
    """Memory DuckDB holds for temporary tables, whichever cursor made them."""
    cur = server.tc.database.cursor()
    got = cur.execute("SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() "
                      "WHERE tag = 'IN_MEMORY_TABLE'").fetchone()
    assert got is not None
    return int(got[0])


def expire(server: LiveServer, clock: list[float]) -> int:
    sessions: UiSessions = server.app.state.ui_sessions
    clock[0] += sessions.idle_seconds + 1
    return sessions.sweep()


def test_an_idle_session_that_never_unloads_leaves_nothing(server: LiveServer, cache: Path,
                                                           clock: list[float],
                                                           tmp_path: Path) -> None:
    csv = tmp_path / "pets.csv"
    csv.write_bytes(PETS)
    client = Client(f"{server.url}/", verbose=False, download_files=False)
    session = f"ui-{client.session_hash}"
    msg, *_ = client.predict(handle_file(str(csv)), api_name="/upload")
    assert "Uploaded" in msg
    out = client.predict("SELECT name FROM pets ORDER BY age", api_name="/run_sql")
    result_csv = Path(out[4]["value"]["path"])
    assert result_csv.is_file() and result_csv.read_text().splitlines()[1] == "kitty"
    assert [t.name for t in server.tc.database.session_tables(session)] == ["pets"]
    assert temp_table_bytes(server) > 0
    # idle, but not for long enough: nothing goes
    clock[0] += server.app.state.ui_sessions.idle_seconds - 1
    assert server.app.state.ui_sessions.sweep() == 0
    assert result_csv.is_file()

    assert expire(server, clock) == 1  # the client never unloaded: only the sweep ends it
    assert server.tc.database.session_tables(session) == []
    with pytest.raises(TableChatError, match="pets"):
        server.tc.run_sql("SELECT * FROM pets", session=session)
    assert not result_csv.exists() and not result_csv.parent.exists()
    assert live_sessions(server) == 0
    assert temp_table_bytes(server) == 0, "the database holds no temporary table"
    assert client.session_hash not in server.app.state.ui_sessions.blocks.state_holder


def test_a_session_in_use_does_not_expire(server: LiveServer, clock: list[float],
                                          tmp_path: Path) -> None:
    csv = tmp_path / "pets.csv"
    csv.write_bytes(PETS)
    client = Client(f"{server.url}/", verbose=False, download_files=False)
    client.predict(handle_file(str(csv)), api_name="/upload")
    sessions: UiSessions = server.app.state.ui_sessions
    for _ in range(3):  # each event a little less than the idle time after the last
        clock[0] += sessions.idle_seconds - 1
        assert sessions.sweep() == 0
        out = client.predict("SELECT count(*) FROM pets", api_name="/run_sql")
        # the table shows formatted values (one number format everywhere: issue 12)
        assert [[str(v) for v in row] for row in out[2]["value"]["data"]] == [["3"]], \
            "its upload is still there"
    # an event still running is never swept, however long it runs
    sessions.started(client.session_hash)
    clock[0] += 10 * sessions.idle_seconds
    assert sessions.sweep() == 0
    sessions.finished(client.session_hash)
    assert expire(server, clock) == 1
    assert live_sessions(server) == 0


def _raw_upload(http: httpx.Client, session_hash: str) -> str:
    """One upload as a script sends it: the file, then the event naming it; no heartbeat,
    no unload. The event's last message."""
    # content of its own: each session's upload is a file of its own to count and delete
    files = {"files": ("pets.csv", PETS + f"{session_hash},1\n".encode(), "text/csv")}
    paths = http.post("/gradio_api/upload", files=files).json()
    body = {"data": [{"path": paths[0], "orig_name": "pets.csv",
                      "meta": {"_type": "gradio.FileData"}}], "session_hash": session_hash}
    event = http.post("/gradio_api/call/upload", json=body).json()["event_id"]
    with http.stream("GET", f"/gradio_api/call/upload/{event}") as reply:
        last: Any = None
        for line in reply.iter_lines():
            if line.startswith("data:"):
                last = json.loads(line[5:])
    return str(last[0]) if last else ""


def test_many_raw_sessions_that_never_unload_all_expire(server: LiveServer, clock: list[float]
                                                        ) -> None:
    """The attacker's form: 200 sessions, each one small upload, none ever unloads."""
    hashes = [f"raw{n:03d}" for n in range(RAW_SESSIONS)]

    def upload(chunk: list[str]) -> list[str]:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            return [_raw_upload(http, h) for h in chunk]

    with ThreadPoolExecutor(4) as pool:
        replies = [r for rs in pool.map(upload, [hashes[k::4] for k in range(4)]) for r in rs]
    assert sum("Uploaded" in r for r in replies) == RAW_SESSIONS, replies[:3]
    assert live_sessions(server) == RAW_SESSIONS
    held = temp_table_bytes(server)
    assert held > 0
    state = server.app.state.ui_sessions.blocks.state_holder
    assert all(h in state for h in hashes)

    # (an earlier test's client may unload meanwhile: its session is counted then too)
    assert expire(server, clock) >= RAW_SESSIONS
    assert live_sessions(server) == 0
    assert temp_table_bytes(server) == 0
    assert not any(h in state for h in hashes)
    assert len(server.app.state.ui_sessions) == 0

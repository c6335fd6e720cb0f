"""The Gradio UI through gradio_client against a launched server: ask, get the SQL and the
rows; edit and run SQL; upload; stop, regenerate, clear; sessions that never meet; bad input."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import tablechat
from tests.test_web_support import LiveServer, ScriptedChatModel

# output positions of the named endpoints (State outputs are not part of the API)
# (the question box is an output but never set by an answer: it is emptied in the browser
# when a question is sent)
ASK = {"chat": 0, "question": 1, "notice": 2, "sql": 3, "table": 4, "info": 5, "csv": 6,
       "number": 7, "chart": 8}
RUN = {"chat": 0, "notice": 1, "table": 2, "info": 3, "csv": 4, "number": 5, "chart": 6}
# (states and buttons are not among an endpoint's outputs for gradio_client)
UPLOAD = {"message": 0, "tables": 1, "pick": 2, "summary": 3, "columns": 4}


@pytest.fixture(scope="module")
def server(demo_db: Path) -> Iterator[LiveServer]:
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel(delay=0.05), upload_max_mb=0.05)
    live = LiveServer(tc).start()
    yield live
    live.stop()


def new_client(server: LiveServer) -> Client:
    return Client(f"{server.url}/", verbose=False, download_files=False)


@pytest.fixture()
def client(server: LiveServer) -> Client:
    return new_client(server)


def text_of(message: dict[str, Any]) -> str:
    content = message["content"]
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def rows_of(table: dict[str, Any]) -> list[list[Any]]:
    if table.get("__type__") == "update":  # the table with its visibility
        table = table.get("value") or {}
    if not table.get("headers"):  # an empty table
        return []
    return [list(r) for r in table["data"]]


def test_ask_gets_sql_rows_chart_and_answer(client: Client) -> None:
    job = client.submit("Revenue by region", api_name="/ask")
    out = job.result()
    steps = job.outputs()
    assert len(steps) > 3, "the answer streams"
    assert all(s[ASK["question"]] == {"__type__": "update"} for s in steps), \
        "no update touches the question box: typing during an answer stays"
    assert out[ASK["sql"]].startswith("SELECT\n  r.name AS region")
    assert "LIMIT" not in out[ASK["sql"]], "the guard's row cap is not shown"
    table = out[ASK["table"]]
    assert table["visible"] is True and table["value"]["headers"] == ["region", "revenue"]
    assert rows_of(table)[:2] == [["Europe", "$4,751,697.72"], ["North America",
                                                                "$3,621,204.38"]]
    assert [r[0] for r in rows_of(table)] == ["Europe", "North America", "Asia Pacific",
                                             "Latin America", "Middle East & Africa"]
    assert out[ASK["info"]] == "5 rows"
    chart = out[ASK["chart"]]
    assert chart["visible"] is True and "<svg" in chart["value"] and ">Europe</text>" in chart[
        "value"]
    assert out[ASK["number"]]["visible"] is False
    chat = out[ASK["chat"]]
    assert text_of(chat[0]) == "Revenue by region"
    assert chat[1]["metadata"]["title"] == "Steps" and "running the query" in text_of(chat[1])
    assert "Europe brings the most revenue." in text_of(chat[2])
    assert "answered by LLM (ScriptedChatModel)" in text_of(chat[2])
    assert "<summary>Table · 5 rows</summary>" in text_of(chat[2]), "the work in the message"


def test_a_single_number_is_shown_big(client: Client) -> None:
    out = client.predict("How many customers are there?", api_name="/ask")
    number = out[ASK["number"]]
    assert number["visible"] is True and "5,000" in number["value"]
    assert out[ASK["chart"]]["visible"] is False


def _download(server: LiveServer, button: dict[str, Any]) -> list[str]:
    value = button["value"]
    path = value["path"] if isinstance(value, dict) else value
    r = httpx.get(f"{server.url}/gradio_api/file={path}")
    assert r.status_code == 200
    return r.text.splitlines()


def test_a_result_cut_at_the_cap_exports_whole_on_demand(
    client: Client, server: LiveServer
) -> None:
    """5,000 customers, shown up to the row cap (1,000), paged; the CSV holds the rows shown,
    and the Export button runs the query again without the cap for all of them (which also
    counts them for the info line)."""
    out = client.predict("List every customer", api_name="/ask")
    info = out[ASK["info"]]
    assert info.startswith("Showing rows 1–50 of 1,000") and "found more" in info, info
    assert len(rows_of(out[ASK["table"]])) == 50, "the table is paged"
    assert "1,000 rows shown" in out[ASK["csv"]]["label"]
    lines = _download(server, out[ASK["csv"]])
    assert lines[0] == "id,name,country" and len(lines) == 1001
    info, button = client.predict(api_name="/export")
    assert "found 5,000 rows; the CSV has all 5,000" in info, info
    assert "all 5,000 rows" in button["label"]
    lines = _download(server, button)
    assert lines[0] == "id,name,country" and len(lines) == 5001
    assert len(set(lines[1:])) == 5000  # each customer once


def test_edited_sql_cut_at_the_cap_exports_up_to_its_own_limit(
    client: Client, server: LiveServer
) -> None:
    out = client.predict("SELECT id FROM customers ORDER BY id LIMIT 1500", api_name="/run_sql")
    assert "found more" in out[RUN["info"]]
    assert "found more than 1,000 rows; the first 1,000 are shown" in text_of(
        out[RUN["chat"]][-1])
    info, button = client.predict(api_name="/export")
    assert "found 1,500 rows; the CSV has all 1,500" in info, info
    lines = _download(server, button)
    assert lines[0] == "id" and len(lines) == 1501 and lines[-1] == "1500"


def test_a_result_that_is_whole_has_nothing_more_to_export(client: Client) -> None:
    out = client.predict("How many regions are there?", api_name="/ask")
    assert out[ASK["csv"]]["label"] == "⬇ Download CSV"
    # the Export button stays hidden; called anyway, it changes nothing
    assert client.predict(api_name="/export") == ({"__type__": "update"}, {"__type__": "update"})


def test_edited_sql_runs_through_the_guard(client: Client) -> None:
    client.predict("Revenue by region", api_name="/ask")
    out = client.predict("SELECT name FROM regions WHERE name LIKE '%America%' ORDER BY 1",
                         api_name="/run_sql")
    assert rows_of(out[RUN["table"]]) == [["Latin America"], ["North America"]]
    assert out[RUN["notice"]] == ""
    assert "Ran the edited SQL" in text_of(out[RUN["chat"]][-2])
    assert "returned 2 rows" in text_of(out[RUN["chat"]][-1])


@pytest.mark.parametrize(("sql", "message"), [
    ("DROP TABLE customers", "not DROP"),
    ("DELETE FROM orders", "not DELETE"),
    ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
    ("SELECT 1; SELECT 2", "one statement"),
    ("ATTACH '/tmp/x.db' AS x", "ATTACH"),
    ("COPY customers TO '/tmp/out.csv'", "COPY"),
    ("SELECT nope FROM customers", "nope"),
    ("SELEC name FROM", ""),
    ("", "Type a SQL query first"),
])
def test_hostile_sql_in_the_sql_box_is_refused(client: Client, demo_db: Path, sql: str,
                                               message: str) -> None:
    before = hashlib.sha256(demo_db.read_bytes()).hexdigest()
    out = client.predict(sql, api_name="/run_sql")
    notice = out[RUN["notice"]]
    assert notice.startswith("⚠️") and message.lower() in notice.lower(), notice
    assert hashlib.sha256(demo_db.read_bytes()).hexdigest() == before
    assert not Path("/tmp/out.csv").exists() and not Path("/tmp/x.db").exists()
    ok = client.predict("SELECT count(*) AS n FROM regions", api_name="/run_sql")
    assert rows_of(ok[RUN["table"]]) == [["5"]], "the server keeps serving"


@pytest.mark.parametrize(("question", "message"), [("", "empty"), ("x" * 100_000, "too long")])
def test_bad_questions_get_a_clear_notice(client: Client, question: str, message: str) -> None:
    out = client.predict(question, api_name="/ask")
    assert message in out[ASK["notice"]]
    assert out[ASK["chat"]] == {"__type__": "update"}, "the chat is left as it was"
    assert rows_of(client.predict("Which regions?", api_name="/ask")[ASK["table"]])


def test_upload_then_ask_about_it(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "pets.csv"
    path.write_text("name,species,age\nrex,dog,3\nfido,dog,5\ntom,cat,4\n")
    out = client.predict(handle_file(str(path)), api_name="/upload")
    assert out[UPLOAD["message"]].startswith("✔ Uploaded **pets**: 3 columns, 3 rows")
    assert "pets" in [r[0] for r in rows_of(out[UPLOAD["tables"]])]
    assert [r[0] for r in rows_of(out[UPLOAD["columns"]])] == ["name", "species", "age"]
    answer = client.predict("Average age of pets", api_name="/ask")
    assert rows_of(answer[ASK["table"]]) == [["4"]]
    summary = client.predict("pets", api_name="/schema")
    assert "uploaded by you" in summary[0]


@pytest.mark.parametrize(("content", "name", "message"), [
    (bytes(range(256)) * 8, "binary.csv", "binary data"),
    (b"n\n" + b"1234567890\n" * 10_000, "big.csv", "upload limit is 0.05 MB"),
    (b'{"broken": ', "broken.json", "cannot read broken.json"),
])
def test_bad_uploads_get_a_clear_message(client: Client, tmp_path: Path, content: bytes,
                                         name: str, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    out = client.predict(handle_file(str(path)), api_name="/upload")
    assert out[UPLOAD["message"]].startswith("⚠️") and message in out[UPLOAD["message"]]
    assert rows_of(client.predict("Which regions?", api_name="/ask")[ASK["table"]])


def test_regenerate_and_clear(client: Client) -> None:
    first = client.predict("Revenue by region", api_name="/ask")
    again = client.predict(api_name="/regenerate")
    assert len(again[ASK["chat"]]) == len(first[ASK["chat"]]), "the answer was replaced"
    assert again[ASK["sql"]] == first[ASK["sql"]]
    cleared = client.predict(api_name="/clear")
    assert cleared[ASK["chat"]] == [] and cleared[ASK["sql"]] == ""
    assert "Nothing to regenerate" in client.predict(api_name="/regenerate")[ASK["notice"]]


def test_stop_ends_a_running_answer(client: Client) -> None:
    job = client.submit("Something slow", api_name="/ask")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not job.outputs():
        time.sleep(0.05)  # wait for the first update: the question is running
    assert job.outputs(), "the question started"
    chat = client.predict(api_name="/stop")
    assert "(stopped)" in text_of(chat[-1])
    after = client.predict("Which regions?", api_name="/ask")
    assert [r[0] for r in rows_of(after[ASK["table"]])][:1] == ["Europe"]
    assert "(stopped)" in text_of(after[ASK["chat"]][2]), "the stopped turn stays visible"


def test_two_sessions_never_see_each_other(server: LiveServer, tmp_path: Path) -> None:
    alice, bob = new_client(server), new_client(server)
    path = tmp_path / "pets.csv"
    path.write_text("name,age\nrex,3\nfido,5\n")
    results: dict[str, Any] = {}

    def run_alice() -> None:
        alice.predict(handle_file(str(path)), api_name="/upload")
        alice.predict("Revenue by region", api_name="/ask")
        results["alice_follow"] = alice.predict("Only Europe", api_name="/ask")
        results["alice_pets"] = alice.predict("How many rows are in pets?", api_name="/ask")

    def run_bob() -> None:
        bob.predict("Which regions?", api_name="/ask")
        results["bob_follow"] = bob.predict("Only Europe", api_name="/ask")
        results["bob_pets"] = bob.predict("How many rows are in pets?", api_name="/ask")

    threads = [threading.Thread(target=run_alice), threading.Thread(target=run_bob)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert rows_of(results["alice_follow"][ASK["table"]])[0][0] == "Europe"
    assert len(rows_of(results["alice_follow"][ASK["table"]])) == 1
    assert rows_of(results["alice_pets"][ASK["table"]]) == [["2"]]
    # bob's follow-up has only his own history: no region revenue SQL to narrow
    assert "WHERE r.name = 'Europe'" not in results["bob_follow"][ASK["sql"]]
    bob_chat = " ".join(text_of(m) for m in results["bob_pets"][ASK["chat"]])
    assert "Revenue by region" not in bob_chat and "pets" in bob_chat
    # a failed answer leaves the previous result where it was
    assert results["bob_pets"][ASK["table"]] == {"__type__": "update"}
    assert "⚠️" in text_of(results["bob_pets"][ASK["chat"]][-1]), "no access to alice's upload"
    assert "uploaded by you" in alice.predict("pets", api_name="/schema")[0]
    with pytest.raises(AppError, match="not in the list of choices"):
        bob.predict("pets", api_name="/schema")  # bob's table list has no pets


def test_two_sessions_upload_the_same_file_at_once(server: LiveServer, tmp_path: Path) -> None:
    """Gradio names an upload after its content's hash: two sessions sending the same bytes
    get one path. The handler used to delete that file once read, under the other session,
    which had uploaded it and not read it yet (issue 12). The order that lost bob's upload is
    pinned here, waiting on events, not time: alice reads, bob uploads the same bytes, alice's
    handler ends, then bob reads. The file goes once both sessions have ended."""
    path = tmp_path / "pets.csv"
    path.write_text("name,age\nrex,3\nfido,5\n")
    alice, bob = new_client(server), new_client(server)
    alice_read, bob_in, alice_done = threading.Event(), threading.Event(), threading.Event()
    real_upload = server.tc.upload
    sources: list[Path] = []

    def upload(session: str, filename: str, source: Any) -> Any:
        sources.append(Path(source))
        if session == f"ui-{alice.session_hash}":
            info = real_upload(session, filename, source)
            alice_read.set()
            bob_in.wait(60)  # bob has uploaded the same bytes and is about to read them
            return info
        bob_in.set()
        alice_done.wait(60)  # alice's handler is over (it deleted the file, before)
        return real_upload(session, filename, source)

    results: dict[str, Any] = {}

    def run_alice() -> None:
        results["alice"] = alice.predict(handle_file(str(path)), api_name="/upload")
        alice_done.set()

    def run_bob() -> None:
        alice_read.wait(60)
        results["bob"] = bob.predict(handle_file(str(path)), api_name="/upload")

    sessions = server.app.state.ui_sessions
    real_clock, now = sessions.clock, [1_000_000.0]
    sessions.clock = lambda: now[0]  # expiry moved by hand, below
    server.tc.upload = upload  # type: ignore[method-assign]
    try:
        threads = [threading.Thread(target=run_alice), threading.Thread(target=run_bob)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        server.tc.upload = real_upload  # type: ignore[method-assign]
        assert len(set(sources)) == 1, "one file in Gradio's cache for both"
        for who in ("alice", "bob"):
            assert results[who][UPLOAD["message"]].startswith("✔ Uploaded **pets**"), who
        for client in (alice, bob):
            assert "uploaded by you" in client.predict("pets", api_name="/schema")[0]
        copy = sources[0]
        assert copy.is_file()
        # alice's session ends (idle); bob's, used since, lives on: the file stays his
        now[0] += sessions.idle_seconds - 1
        bob.predict("pets", api_name="/schema")
        now[0] += 2
        assert sessions.sweep() >= 1
        assert copy.is_file(), "bob's session read these bytes too"
        now[0] += sessions.idle_seconds
        assert sessions.sweep() >= 1
        assert not copy.exists(), "no session reads it any more: it goes"
    finally:
        server.tc.upload = real_upload  # type: ignore[method-assign]
        sessions.clock = real_clock


def test_the_first_example_is_answered_offline(demo_db: Path) -> None:
    live = LiveServer(tablechat.connect(demo_db)).start()  # no LLM at all
    try:
        client = new_client(live)
        out = client.predict("How many customers are there?", api_name="/ask")
        assert rows_of(out[ASK["table"]]) == [["5,000"]]
        assert "answered by the offline engine" in text_of(out[ASK["chat"]][-1])
    finally:
        live.stop()

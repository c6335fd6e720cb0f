"""Issue 11, class 10: however much a client makes the UI write (result CSVs, exports, raw
uploads), the files it keeps on disk stay within the configured budgets."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

import tablechat
from tablechat.web.files import ResultFiles
from tests.test_web_support import LiveServer, ScriptedChatModel

MB = 1024 * 1024
SESSION_MB = 0.3
TOTAL_MB = 0.6
# ~500 rows of ~260 bytes: ~130 KB a CSV
WIDE = "SELECT id, customer_id, order_date, repeat('x', 240) AS pad FROM orders ORDER BY id"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Gradio's cache folder, this module's own."""
    folder = tmp_path_factory.mktemp("gradio-budget").resolve()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def server(demo_db: Path, cache: Path) -> Iterator[LiveServer]:
    tc = tablechat.connect(demo_db, llm=ScriptedChatModel(), max_rows=500,
                           ui_session_disk_mb=SESSION_MB, ui_disk_mb=TOTAL_MB)
    live = LiveServer(tc).start()
    yield live
    live.stop()


def disk_use(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def client_of(server: LiveServer) -> Client:
    return Client(f"{server.url}/", verbose=False, download_files=False)


def test_one_session_stays_within_its_budget(server: LiveServer, cache: Path) -> None:
    client = client_of(server)
    before = disk_use(cache)  # other tests' sessions
    peak = 0
    for n in range(10):  # ~1.3 MB of CSVs written
        out = client.predict(f"{WIDE} LIMIT {600 + n}", api_name="/run_sql")
        assert out[4]["visible"] is True, "each run still offers its CSV"
        assert disk_use(cache) <= max(before, TOTAL_MB * MB)
        # the folder of the session's files
        peak = max(peak, disk_use(Path(out[4]["value"]["path"]).parent))
    assert 0 < peak <= SESSION_MB * MB, f"{peak / MB:.2f} MB on disk"
    # nothing else grew: Gradio kept no copies of its own
    assert disk_use(cache) - before <= SESSION_MB * MB


def test_many_sessions_stay_within_the_total_budget(server: LiveServer, cache: Path) -> None:
    clients = [client_of(server) for _ in range(4)]
    for n in range(6):  # ~3 MB written across four sessions
        for client in clients:
            client.predict(f"{WIDE} LIMIT {700 + n}", api_name="/run_sql")
            assert disk_use(cache) <= TOTAL_MB * MB


def test_an_export_over_the_budget_is_refused_and_leaves_nothing(server: LiveServer,
                                                                 cache: Path) -> None:
    client = client_of(server)
    client.predict(WIDE, api_name="/run_sql")  # 40,000 rows: ~10 MB exported whole
    info, button = client.predict(api_name="/export")
    assert "disk budget" in info and "TABLECHAT_UI_SESSION_DISK_MB" in info
    assert button.get("value"), "the rows shown can still be downloaded"
    assert disk_use(cache) <= TOTAL_MB * MB


def test_raw_uploads_stay_within_the_total_budget(server: LiveServer, cache: Path) -> None:
    """Files posted to Gradio's upload route and never used by an event."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for n in range(20):  # 2 MB posted
            files = {"files": (f"junk{n}.csv", b"a\n" + b"1\n" * 50_000, "text/csv")}
            got = http.post("/gradio_api/upload", files=files)
            assert got.status_code == 200
            assert disk_use(cache) <= TOTAL_MB * MB, f"after {n + 1} uploads"


def test_a_session_keeps_only_its_newest_files_and_loses_them_when_it_ends(
        tmp_path: Path) -> None:
    files = ResultFiles(session_bytes=MB, total_bytes=MB, max_age=3600, keep=4, root=tmp_path)
    made = []
    for i in range(6):
        f = files.new_path("s")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("x\n")
        os.utime(f, (time.time() - 100 + i, time.time() - 100 + i))
        made.append(f)
    (files.folder("s") / "notes.txt").write_text("not a result")
    files.admit("s", made[-1])
    assert sorted(p.name for p in files.folder("s").iterdir()) == sorted(
        ["notes.txt", *(f.name for f in made[2:])])
    files.end("s")
    assert not files.folder("s").exists()


def test_files_past_their_age_go(tmp_path: Path) -> None:
    files = ResultFiles(session_bytes=MB, total_bytes=MB, max_age=60, root=tmp_path)
    old, new = files.new_path("s"), files.new_path("s")
    old.parent.mkdir(parents=True)
    old.write_text("old\n")
    new.write_text("new\n")
    os.utime(old, (time.time() - 120, time.time() - 120))
    files.admit("s", new)
    assert not old.exists() and new.exists()

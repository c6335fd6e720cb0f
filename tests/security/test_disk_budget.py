"""Issue 11, class 10: however much a client makes the UI write (result CSVs, exports, raw
uploads), the files it keeps on disk stay within the configured budgets."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

import tablechat
from tablechat.web.files import DiskBudgetError, ResultFiles
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


def _file(files: ResultFiles, session: str, size: int, age: float) -> Path:
    f = files.new_path(session)
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(b"x" * size)
    os.utime(f, (time.time() - age, time.time() - age))
    return f


def test_an_export_stays_within_the_budgets_while_it_is_written(demo_db: Path,
                                                                tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    """Before, an export could pass the budgets by its own size until it was done (up to
    TABLECHAT_EXPORT_MAX_ROWS rows). The disk is measured at every batch it writes."""
    kb = 1024
    files = ResultFiles(session_bytes=200 * kb, total_bytes=300 * kb, max_age=3600,
                        root=tmp_path)
    older = [_file(files, "s", 40 * kb, age) for age in (30, 20, 10)]
    others = _file(files, "o", 150 * kb, 40)
    tc = tablechat.connect(demo_db, max_rows=10)
    seen: list[tuple[int, int]] = []  # (the session's folder, everything) at every batch
    batches = tc.database.batches

    @contextlib.contextmanager
    def measured(sql: str, **kw: object) -> Iterator[tuple[list[str], Iterator[object]]]:
        with batches(sql, **kw) as (columns, rows):  # type: ignore[arg-type]
            def each() -> Iterator[object]:
                for batch in rows:
                    seen.append((disk_use(files.folder("s")), disk_use(tmp_path)))
                    yield batch
            yield columns, each()

    monkeypatch.setattr(tc.database, "batches", measured)
    try:
        with (pytest.raises(DiskBudgetError, match="disk budget") as refused,
              files.writing("s") as room):
            # the session's newest file stays (its Download button names it); room for the
            # rest of its budget is made from the oldest files of all
            assert room == 160 * kb
            assert [f.exists() for f in older] == [False, False, True]
            assert not others.exists()
            tc.export_csv(WIDE, files.new_path("s"), max_bytes=room)  # ~10 MB
        assert "TABLECHAT_UI_SESSION_DISK_MB" in str(refused.value)
        assert len(seen) > 1
        assert max(s for s, _ in seen) <= 200 * kb and max(t for _, t in seen) <= 300 * kb
        assert [p.name for p in files.folder("s").iterdir()] == [older[-1].name]
        # a small export fits, and is kept
        with files.writing("s") as room:
            done = tc.export_csv("SELECT id FROM orders LIMIT 100", files.new_path("s"),
                                 max_bytes=room)
        assert files.admit("s", done.path).is_file()
    finally:
        tc.close()


def test_exports_written_at_once_share_the_total_budget(tmp_path: Path) -> None:
    files = ResultFiles(session_bytes=MB, total_bytes=int(1.5 * MB), max_age=3600, root=tmp_path)
    _file(files, "old", MB // 4, 100)
    with files.writing("a") as a, files.writing("b") as b, files.writing("c") as c:
        assert a == MB  # the oldest file made way
        assert a + b + c + disk_use(tmp_path) <= 1.5 * MB
        assert c == 0
        files.sweep()  # a sweep meanwhile keeps room for the exports being written
        assert a + b + c + disk_use(tmp_path) <= 1.5 * MB
    with files.writing("c") as c:
        assert c == MB  # given back

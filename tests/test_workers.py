"""Past one process (issue 15): any server process answers any API request of a session, and
``tablechat serve --workers N`` runs N processes behind one port that stop together.

Real processes only: ``tablechat serve`` started as a person starts it, sharing a store (a
SQLite file) and a shared directory, on 127.0.0.1. The offline engine answers (no LLM)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.serving import serving

ROOT = Path(__file__).resolve().parents[1]
PETS = ("pets.csv", b"name,age\nrex,3\nfido,5\n", "text/csv")
COUNT = "How many rows are in pets?"


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "TABLECHAT_LLM_URL": "", "TABLECHAT_AUTH": "",
            "TABLECHAT_API_KEYS": "", "TABLECHAT_STORE": f"sqlite:///{tmp_path}/store.sqlite",
            "TABLECHAT_SHARED_DIR": str(tmp_path / "shared"),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "app"), os.environ.get("PYTHONPATH", "")])}


def test_one_sessions_requests_alternate_between_two_processes(demo_db: Path,
                                                               tmp_path: Path) -> None:
    env = _env(tmp_path)
    with serving(demo_db, env) as (_, a_url), serving(demo_db, env) as (_, b_url), \
            httpx.Client(base_url=a_url, timeout=60) as a, \
            httpx.Client(base_url=b_url, timeout=60) as b:
        assert a.get("/api/health").json()["process"] != b.get("/api/health").json()["process"]
        sid = a.post("/api/sessions").json()["session"]
        up = a.post("/api/upload", data={"session": sid}, files={"file": PETS})
        assert up.status_code == 200, up.text
        # B never saw the upload: it reads the shared file when the session reaches it
        asked = b.post("/api/ask", json={"question": COUNT, "session": sid}).json()
        assert asked["rows"] == [[2]], asked
        assert "pets" in b.get("/api/schema", params={"session": sid}).text
        exported = b.post("/api/export", json={"sql": "SELECT name FROM pets ORDER BY age",
                                               "session": sid})
        assert exported.status_code == 200, exported.text
        fetched = a.get(exported.json()["url"])
        assert fetched.status_code == 200, fetched.text
        assert fetched.text.splitlines() == ["name", "rex", "fido"]
        # a re-upload on B replaces the table on A too
        bigger = ("pets.csv", b"name,age\nrex,3\nfido,5\ntom,7\n", "text/csv")
        assert b.post("/api/upload", data={"session": sid}, files={"file": bigger}
                      ).status_code == 200
        assert a.post("/api/ask", json={"question": COUNT, "session": sid}
                      ).json()["rows"] == [[3]]
        assert b.delete(f"/api/sessions/{sid}").status_code == 204
        for http in (a, b):  # ended everywhere
            gone = http.post("/api/ask", json={"question": COUNT, "session": sid})
            assert gone.status_code == 404
            assert http.get(exported.json()["url"]).status_code == 404
        assert not any((tmp_path / "shared" / "uploads").iterdir()), "its uploads deleted"
        assert not list((tmp_path / "shared" / "exports").rglob("*.csv")), "its exports too"
        # another caller's session stays another's, whichever process is asked
        other = b.post("/api/upload", files={"file": PETS}).json()["session"]
        assert a.post("/api/ask", json={"question": COUNT, "session": other}
                      ).json()["rows"] == [[2]]


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_workers_2_runs_two_processes_that_both_answer_and_stop_together(
        demo_db: Path, tmp_path: Path, sig: signal.Signals) -> None:
    with serving(demo_db, _env(tmp_path), "--workers", "2") as (proc, url):
        seen: set[int] = set()
        sid = httpx.post(f"{url}/api/upload", files={"file": PETS}, timeout=60
                         ).json()["session"]
        for _ in range(400):  # a new connection each time: the kernel picks a process
            with httpx.Client(base_url=url, timeout=60) as http:
                seen.add(http.get("/api/health").json()["process"])
                assert http.post("/api/ask", json={"question": COUNT, "session": sid}
                                 ).json()["rows"] == [[2]]
            if len(seen) == 2:
                break
        workers = _children(proc.pid)
        assert seen <= workers and len(seen) == 2, (seen, workers)
        html = httpx.get(f"{url}/", timeout=30)
        assert html.status_code == 404, "no UI with several workers (docs/web.md)"
        proc.send_signal(sig)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("tablechat serve --workers 2 did not stop after the signal")
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
    # multiprocessing's resource tracker (a child too) ends when it sees its parent's pipe
    # close, a moment after the parent: wait for that, not for a time
    deadline = time.monotonic() + 60
    while [p for p in workers if _alive(p)]:
        assert time.monotonic() < deadline, [p for p in workers if _alive(p)]
        time.sleep(0.05)


def test_a_login_on_one_process_is_valid_on_another(demo_db: Path, tmp_path: Path) -> None:
    env = {**_env(tmp_path), "TABLECHAT_AUTH": "ana:pw-ana"}
    with serving(demo_db, env) as (_, a_url), serving(demo_db, env) as (_, b_url):
        with httpx.Client(base_url=a_url, timeout=60) as a:
            assert a.post("/login", data={"username": "ana", "password": "pw-ana"}
                          ).status_code == 200
            cookies = dict(a.cookies)
        assert cookies and not any("pw-ana" in v for v in cookies.values())
        with httpx.Client(base_url=b_url, timeout=60, cookies=cookies) as b:
            assert b.get("/gradio_api/user").json() == "ana"
            assert b.get("/config").status_code == 200  # the UI's own route, past auth
            b.get("/logout", follow_redirects=False)  # Gradio's logout, on B: all of ana's
        with httpx.Client(base_url=a_url, timeout=60, cookies=cookies) as a:
            assert a.get("/config").status_code == 401, "logged out everywhere"
        with httpx.Client(base_url=b_url, timeout=60) as anonymous:
            assert anonymous.get("/config").status_code == 401

"""The same store on PostgreSQL: a throwaway cluster from Debian's binaries on 127.0.0.1,
migrated, written by several processes at once, read back. Skipped where PostgreSQL or its
driver is not installed."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tablechat.store import Example, FeedbackRecord, SQLStore, utcnow
from tablechat.store.migrations import LATEST
from tests.test_store import _writer

pytest.importorskip("psycopg")
BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    if not (BIN / "initdb").exists():
        pytest.skip("PostgreSQL is not installed")
    # not under pytest's tmp_path: its parents are closed to the postgres user
    root = Path(tempfile.mkdtemp(prefix="tablechat-pg-"))
    # PostgreSQL refuses to run as root: run it as the postgres user then
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if prefix:
        shutil.chown(root, "postgres")
    port = _free_port()
    data = root / "data"
    subprocess.run([*prefix, str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U",
                    "tablechat"], check=True, capture_output=True)
    subprocess.run([*prefix, str(BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"),
                    "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "-w",
                    "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://tablechat@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                        "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_store_round_trip(pg_url: str) -> None:
    store = SQLStore(pg_url)
    try:
        assert store.version == LATEST
        fid = store.add_feedback(FeedbackRecord("demo", "q", sql="SELECT 1", good=False,
                                                corrected_sql="SELECT 2", context=[{"a": 1}]))
        assert [(f.id, f.corrected_sql, f.context) for f in store.feedback()] == [
            (fid, "SELECT 2", [{"a": 1}])]
        store.add_examples([Example("demo", "q", "SELECT 2")])
        assert store.examples_revision("demo")[0] == 1
        assert store.purge_feedback(utcnow()) == 1
        assert SQLStore(pg_url).version == LATEST  # opening again migrates nothing
    finally:
        store.close()


def test_postgres_store_under_concurrent_writers(pg_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(pg_url, start, w, 60)) for w in range(4)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * 4
    store = SQLStore(pg_url)
    got = {f.question for f in store.feedback() if f.question.startswith("w")}
    assert got == {f"w{w} q{i}" for w in range(4) for i in range(60)}
    store.close()

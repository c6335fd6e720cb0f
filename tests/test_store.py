"""The store: records round-trip, an old-version file migrates, several processes write at
once without losing anything, and a store newer than the code is refused."""

from __future__ import annotations

import multiprocessing
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from tablechat.store import (
    Example,
    FeedbackRecord,
    SQLStore,
    StoreError,
    open_store,
    utcnow,
)
from tablechat.store.migrations import LATEST

# The schema as tablechat's first release of the store wrote it (version 1), frozen here so
# the test keeps meaning the same thing whatever later steps change.
V1_FILE_SQL = """
CREATE TABLE tablechat_store_meta (key VARCHAR(50) PRIMARY KEY, value VARCHAR(200) NOT NULL);
INSERT INTO tablechat_store_meta VALUES ('version', '1');
CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at DATETIME NOT NULL,
  database VARCHAR(200) NOT NULL, question TEXT NOT NULL, context TEXT DEFAULT '[]' NOT NULL,
  sql TEXT, good BOOLEAN, comment TEXT, engine VARCHAR(50), model VARCHAR(200),
  principal VARCHAR(200));
CREATE TABLE examples (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at DATETIME NOT NULL,
  database VARCHAR(200) NOT NULL, question TEXT NOT NULL, sql TEXT NOT NULL,
  source VARCHAR(20) NOT NULL, verified_by VARCHAR(200), feedback_id INTEGER);
INSERT INTO feedback (created_at, database, question, context, sql, good, comment, engine,
  model, principal) VALUES ('2025-03-01 10:00:00.000000', 'demo', 'how many customers', '[]',
  'SELECT count(*) FROM customers', 1, 'right', 'offline', 'offline', 'ana');
INSERT INTO examples (created_at, database, question, sql, source, verified_by)
  VALUES ('2025-03-01 10:00:00.000000', 'demo', 'how many customers',
  'SELECT count(*) FROM customers', 'vote', 'ana');
"""


@pytest.fixture()
def store(tmp_path: Path) -> SQLStore:
    s = SQLStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    yield s
    s.close()


def test_records_round_trip(store: SQLStore) -> None:
    fid = store.add_feedback(FeedbackRecord(
        database="demo", question="top customers", sql="SELECT 1", good=False,
        corrected_sql="SELECT 2", comment="wrong table", context=[{"role": "user",
        "content": "hi"}], engine="llm", model="qwen", prompt_version="abc",
        principal="ana", session="s1"))
    [back] = store.feedback()
    assert (back.id, back.good, back.corrected_sql, back.context, back.principal) == (
        fid, False, "SELECT 2", [{"role": "user", "content": "hi"}], "ana")
    ids = store.add_examples([Example("demo", "q1", "SELECT 1"), Example("other", "q2", "S")])
    assert [e.question for e in store.examples(database="demo")] == ["q1"]
    rev = store.examples_revision("demo")
    assert store.remove_examples([ids[0]]) == 1
    assert store.examples_revision("demo") != rev
    assert store.examples(database="demo") == []
    digest = store.put_schema("CREATE TABLE t (a INT)")
    assert store.put_schema("CREATE TABLE t (a INT)") == digest
    assert store.schema_text(digest) == "CREATE TABLE t (a INT)"
    store.touch_session("s1", principal="ana", data={"tab": 1})
    info = store.touch_session("s1", data={"uploads": 2})
    assert (info.principal, info.data) == ("ana", {"tab": 1, "uploads": 2})
    assert store.end_session("s1") and store.session("s1") is None


def test_sessions_by_prefix_take_the_prefix_literally(store: SQLStore) -> None:
    """API sessions and logins share the sessions table, told apart by their ids' prefixes;
    ``_`` and ``%`` in a prefix are not LIKE wildcards."""
    for sid in ("api-1", "api-2", "apix3", "login-a", "a%_b-1", "aXYb-2"):
        store.touch_session(sid)
    assert [s.id for s in store.sessions("api-")] == ["api-1", "api-2"]
    assert [s.id for s in store.sessions("login-")] == ["login-a"]
    assert [s.id for s in store.sessions("a%_b")] == ["a%_b-1"]


def test_purge_before_date(store: SQLStore) -> None:
    now = utcnow()
    store.add_feedback(FeedbackRecord("demo", "old", created_at=now - timedelta(days=40)))
    store.add_feedback(FeedbackRecord("demo", "new", created_at=now))
    assert store.purge_feedback(now - timedelta(days=30)) == 1
    assert [f.question for f in store.feedback()] == ["new"]


def test_an_old_version_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:
        con.executescript(V1_FILE_SQL)
    store = SQLStore(f"sqlite:///{path}")
    try:
        assert store.version == LATEST > 1
        [old] = store.feedback()
        assert (old.question, old.good, old.principal, old.corrected_sql) == (
            "how many customers", True, "ana", None)
        assert [e.sql for e in store.examples()] == ["SELECT count(*) FROM customers"]
        # what version 2 added works on the migrated file
        store.add_feedback(FeedbackRecord("demo", "q", corrected_sql="SELECT 1",
                                          prompt_version="v", session="s"))
        store.touch_session("s")
    finally:
        store.close()
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT value FROM tablechat_store_meta").fetchone() == (
            str(LATEST),)
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    # opening it again changes nothing
    again = SQLStore(f"sqlite:///{path}")
    assert again.count_feedback() == 2
    again.close()


def test_a_newer_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    SQLStore(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as con:
        con.execute("UPDATE tablechat_store_meta SET value = '99'")
    with pytest.raises(StoreError, match="newer than this tablechat"):
        SQLStore(f"sqlite:///{path}")


def test_bad_url_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="not a SQLAlchemy URL"):
        SQLStore("no url at all")


def test_open_store_shares_one_store_per_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    assert open_store(url) is open_store(url)


def _writer(url: str, start: multiprocessing.synchronize.Event, worker: int, n: int) -> None:
    store = SQLStore(url)  # every process migrates (or finds migrated) the same fresh file
    start.wait()
    for i in range(n):
        store.add_feedback(FeedbackRecord("demo", f"w{worker} q{i}", good=i % 2 == 0,
                                          comment="x" * 200))
        if i % 10 == 0:
            store.add_examples([Example("demo", f"w{worker} e{i}", "SELECT 1")])
    store.close()


PROCESSES, WRITES = 8, 120


def test_eight_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'busy.sqlite'}"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(url, start, w, WRITES)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    store = SQLStore(url)
    assert store.count_feedback() == PROCESSES * WRITES
    got = {f.question for f in store.feedback()}
    assert got == {f"w{w} q{i}" for w in range(PROCESSES) for i in range(WRITES)}
    assert len(store.examples()) == PROCESSES * len(range(0, WRITES, 10))
    store.close()

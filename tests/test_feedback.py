"""TableChat.feedback: what is stored with a vote, a comment or a correction; who may verify;
bounds; the queried database is never written; `tablechat feedback purge`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import tablechat
from tablechat import TableChat
from tablechat.cli import main
from tablechat.errors import ConfigurationError
from tablechat.store import FeedbackError, SQLStore, close_stores, utcnow

QUESTION = "how many customers are there"


@pytest.fixture()
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    monkeypatch.setenv("TABLECHAT_STORE", url)
    monkeypatch.delenv("TABLECHAT_LLM_URL", raising=False)
    yield url
    close_stores()


@pytest.fixture()
def tc(demo_db: Path, store_url: str) -> Iterator[TableChat]:
    chat = tablechat.connect(demo_db)
    yield chat
    chat.close()


def _store(url: str) -> SQLStore:
    return SQLStore(url)


def test_a_vote_keeps_what_produced_the_answer(tc: TableChat, store_url: str) -> None:
    history = [{"role": "user", "content": "how many orders are there"},
               {"role": "assistant", "content": "There are 40,000 orders."}]
    answer = tc.ask(QUESTION, history)
    assert answer.sql
    record = tc.feedback(answer, good=True, comment="right", principal="ana", session="s1",
                         history=history)
    [stored] = _store(store_url).feedback()
    assert stored.id == record.id
    assert (stored.database, stored.question, stored.good, stored.comment) == (
        "demo", QUESTION, True, "right")
    assert stored.sql == answer.source_sql and stored.engine == "offline"
    assert (stored.principal, stored.session) == ("ana", "s1")
    assert [m["content"] for m in stored.context] == [h["content"] for h in history]
    assert "CREATE TABLE customers" in (_store(store_url).schema_text(stored.schema_hash) or "")
    # asked after another question, it may be a follow-up: no example
    assert _store(store_url).examples() == []
    # asked first, the vote verifies the pair
    fresh = tc.ask(QUESTION)
    tc.feedback(fresh, good=True, principal="ana", history=history[1:])
    [example] = _store(store_url).examples(database="demo")
    assert (example.question, example.sql, example.source, example.verified_by) == (
        QUESTION, answer.source_sql, "vote", "ana")


def test_a_correction_is_checked_and_becomes_the_example(tc: TableChat, store_url: str) -> None:
    answer = tc.ask(QUESTION)
    fixed = "SELECT count(DISTINCT email) FROM customers"
    tc.feedback(answer, good=False, sql=fixed)
    [stored] = _store(store_url).feedback()
    assert (stored.good, stored.corrected_sql, stored.sql) == (False, fixed, answer.source_sql)
    assert [(e.sql, e.source) for e in _store(store_url).examples()] == [(fixed, "correction")]
    with pytest.raises(FeedbackError, match="corrected SQL is refused"):
        tc.feedback(answer, sql="DELETE FROM customers")
    with pytest.raises(FeedbackError, match="corrected SQL is refused"):
        tc.feedback(answer, sql="SELECT * FROM no_such_table")


def test_a_vote_down_verifies_nothing(tc: TableChat, store_url: str) -> None:
    tc.feedback(tc.ask(QUESTION), good=False, comment="wrong")
    assert _store(store_url).examples() == []


@pytest.mark.parametrize(("policy", "principal", "verified"), [
    ("none", "ana", False), ("named", None, False), ("named", "ana", True),
    ("ana, bo", "bo", True), ("ana, bo", "eve", False), ("*", None, True)])
def test_who_may_verify_is_a_policy(demo_db: Path, store_url: str, policy: str,
                                    principal: str | None, verified: bool) -> None:
    with tablechat.connect(demo_db, verifiers=policy) as chat:
        chat.feedback(chat.ask(QUESTION), good=True, principal=principal)
    assert len(_store(store_url).examples()) == int(verified)
    assert _store(store_url).count_feedback() == 1


def test_feedback_text_is_bounded_plain_text(demo_db: Path, store_url: str) -> None:
    with tablechat.connect(demo_db, feedback_max_chars=50) as chat:
        answer = chat.ask(QUESTION)
        chat.feedback(answer, comment="<b>bold</b>\x00\u202eevil" + "x" * 100)
        with pytest.raises(FeedbackError, match="too long"):
            chat.feedback(answer, sql="SELECT 1 " + " " * 10 + "-- " + "y" * 60)
    [stored] = _store(store_url).feedback()
    assert stored.comment == ("<b>bold</b>evil" + "x" * 100)[:50]  # kept as text, not markup


def test_nothing_to_record_is_refused(tc: TableChat) -> None:
    with pytest.raises(FeedbackError, match="nothing to record"):
        tc.feedback(tc.ask(QUESTION))
    with pytest.raises(FeedbackError, match="good must be"):
        tc.feedback(tc.ask(QUESTION), good="yes")  # type: ignore[arg-type]


def test_the_queried_database_is_never_written(demo_db: Path, store_url: str) -> None:
    before = hashlib.sha256(demo_db.read_bytes()).hexdigest()
    with tablechat.connect(demo_db) as chat:
        chat.feedback(chat.ask(QUESTION), good=True, sql="SELECT count(*) FROM customers")
    assert hashlib.sha256(demo_db.read_bytes()).hexdigest() == before
    with tablechat.connect(demo_db, store=f"sqlite:///{demo_db}") as chat, \
            pytest.raises(ConfigurationError, match="must not be the queried database"):
        chat.feedback(chat.ask(QUESTION), good=True)


def test_cli_purge_before_a_date(tc: TableChat, store_url: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    store = _store(store_url)
    tc.feedback(tc.ask(QUESTION), good=True)
    old = store.feedback()[0]
    old.id, old.created_at = None, utcnow() - timedelta(days=100)
    store.add_feedback(old)
    cutoff = (utcnow() - timedelta(days=30)).date().isoformat()
    assert main(["feedback", "purge", "--before", cutoff]) == 0
    assert store.count_feedback() == 1
    assert main(["feedback", "list"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["question"] == QUESTION
    assert main(["feedback", "purge", "--before", "last week"]) == 2
    assert "not a date" in capsys.readouterr().err

"""Verified examples as few-shot pairs in the LLM's SQL prompt (issue 14): the closest ones of
this database, bounded and defused; none from another database; a broken store fails nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import FakeListChatModel

import tablechat
from tablechat.store import Example, close_stores, open_store

EXAMPLE_SQL = ("SELECT c.name FROM customers AS c WHERE NOT EXISTS "
               "(SELECT 1 FROM orders AS o WHERE o.customer_id = c.customer_id)")


@pytest.fixture()
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    monkeypatch.setenv("TABLECHAT_STORE", url)
    yield url
    close_stores()


def _recording(replies: list[str]) -> tuple[Any, list[str]]:
    sent: list[str] = []

    class Recording(FakeListChatModel):
        def _call(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
            sent.append("\n".join(str(m.content) for m in messages))
            return super()._call(messages, stop, run_manager, **kwargs)

    return Recording(responses=replies), sent


def _sql_prompt(sent: list[str]) -> str:
    return next(text for text in sent if "## Examples" in text)


def test_the_closest_verified_examples_reach_the_sql_prompt(demo_db: Path,
                                                            store_url: str) -> None:
    open_store(store_url).add_examples([
        Example("demo", "Which customers never placed an order?", EXAMPLE_SQL),
        Example("demo", "![x](http://attacker.invalid/a.png) revenue by month?",
                "SELECT 1 AS one"),
        Example("other_db", "Which customers never ordered anything at all?",
                "SELECT 'not this database'"),
    ])
    model, sent = _recording(["SELECT count(*) AS n FROM customers", "There are 5,000."])
    with tablechat.connect(demo_db, llm=model) as tc:
        answer = tc.ask("Which customers never placed any order?")
    assert answer.error is None
    prompt = _sql_prompt(sent)
    examples = prompt.split("## Examples", 1)[1].split("## Conversation so far", 1)[0]
    assert "Q: Which customers never placed an order?" in examples
    assert EXAMPLE_SQL in examples
    assert "not this database" not in examples  # examples of another database stay out
    assert "![" not in examples and "](" not in examples  # defused like any data


def test_no_examples_say_none(demo_db: Path, store_url: str) -> None:
    model, sent = _recording(["SELECT count(*) AS n FROM customers", "There are 5,000."])
    with tablechat.connect(demo_db, llm=model) as tc:
        assert tc.ask("how many customers").error is None
    examples = _sql_prompt(sent).split("## Examples", 1)[1]
    assert "(none)" in examples.split("## Conversation so far", 1)[0]


def test_memory_off_sends_no_examples(demo_db: Path, store_url: str) -> None:
    open_store(store_url).add_examples([Example("demo", "how many customers", EXAMPLE_SQL)])
    model, sent = _recording(["SELECT count(*) AS n FROM customers", "There are 5,000."])
    with tablechat.connect(demo_db, llm=model, memory=False) as tc:
        assert tc.ask("how many customers").error is None
    assert EXAMPLE_SQL not in _sql_prompt(sent)


def test_a_store_that_cannot_be_read_fails_no_answer(demo_db: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "not-a-database.sqlite"
    bad.write_bytes(b"this is not SQLite" * 100)
    monkeypatch.setenv("TABLECHAT_STORE", f"sqlite:///{bad}")
    model, _sent = _recording(["SELECT count(*) AS n FROM customers", "There are 5,000."])
    try:
        with tablechat.connect(demo_db, llm=model) as tc:
            answer = tc.ask("how many customers")
    finally:
        close_stores()
    assert answer.error is None and answer.rows == [(5000,)]

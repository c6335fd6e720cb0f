"""The text-to-SQL chain with scripted chat models: answers, repairs, refusals, retry budget."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from langchain_core.language_models import FakeListChatModel
from pydantic import Field

import tablechat
from tablechat import events as ev


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def connect(demo_db: Path, replies: list[str], **settings) -> tablechat.TableChat:
    return tablechat.connect(demo_db, llm=FakeListChatModel(responses=replies), **settings)


def test_correct_first_answer(demo_db: Path) -> None:
    tc = connect(
        demo_db,
        [
            "```sql\nSELECT r.name AS region, count(*) AS stores FROM stores s "
            "JOIN regions r ON r.id = s.region_id GROUP BY r.name ORDER BY stores DESC\n```",
            "Europe has the most stores (12).",
        ],
    )
    answer = tc.ask("How many stores per region?")
    assert answer.error is None
    assert answer.engine == "llm"
    assert answer.attempts == 1
    assert answer.columns == ["region", "stores"]
    assert answer.rows[0] == ("Europe", 12)
    assert sum(r[1] for r in answer.rows) == 40
    assert answer.text == "Europe has the most stores (12)."
    assert answer.chart is not None and answer.chart["type"] == "bar"
    assert answer.sql is not None and answer.sql.endswith("LIMIT 1001")
    assert list(answer.df.columns) == ["region", "stores"]


def test_wrong_column_is_repaired_after_the_error_is_fed_back(demo_db: Path) -> None:
    model = FakeListChatModel(
        responses=[
            "SELECT segmnt, count(*) FROM customers GROUP BY segmnt",
            "SELECT segment, count(*) AS n FROM customers GROUP BY segment ORDER BY n DESC",
            "Consumers are the largest segment.",
        ]
    )
    tc = tablechat.connect(demo_db, llm=model)
    seen_prompts: list[str] = []
    original = model._call

    def recording(messages, *args, **kwargs):
        seen_prompts.append("\n".join(str(m.content) for m in messages))
        return original(messages, *args, **kwargs)

    model.__dict__["_call"] = recording
    answer = tc.ask("customers per segment")
    assert answer.error is None
    assert answer.attempts == 2
    assert answer.rows[0][0] == "Consumer"
    retries = [e for e in answer.events if isinstance(e, ev.Status) and e.step == "retry"]
    assert len(retries) == 1 and "segmnt" in retries[0].message
    # the second SQL prompt holds the failed query and the error message
    assert "segmnt" in seen_prompts[1] and "could not be resolved" in seen_prompts[1]


def test_hostile_sql_from_the_model_is_refused_and_never_run(demo_db: Path) -> None:
    before = _digest(demo_db)
    tc = connect(
        demo_db,
        [
            "DROP TABLE customers",
            "SELECT 1; DELETE FROM orders",
            "COPY customers TO '/tmp/tablechat-leak.csv'",
        ],
        max_retries=2,
    )
    answer = tc.ask("delete everything")
    assert answer.error is not None and answer.error_type == "NoAnswerError"
    assert "3 attempts" in answer.error
    assert not [e for e in answer.events if isinstance(e, ev.SQL)], "no hostile SQL was run"
    assert not [e for e in answer.events if isinstance(e, ev.Table)]
    assert not Path("/tmp/tablechat-leak.csv").exists()
    assert _digest(demo_db) == before
    assert tc.run_sql("SELECT count(*) FROM customers").rows == [(5000,)]


def test_the_model_is_told_when_the_row_cap_cut_the_result(demo_db: Path) -> None:
    prompts: list[str] = []
    for cap in (3, 5):
        model = FakeListChatModel(responses=["SELECT name FROM regions", "Some regions."])
        original = model._call

        def recording(messages, *args, original=original, **kwargs):
            prompts.append("\n".join(str(m.content) for m in messages))
            return original(messages, *args, **kwargs)

        model.__dict__["_call"] = recording
        answer = tablechat.connect(demo_db, llm=model, max_rows=cap).ask("list the regions")
        assert len(answer.rows) == cap and answer.truncated is (cap == 3)
    cut, whole = prompts[1], prompts[3]  # the answer prompts (after each SQL prompt)
    assert "3 rows, truncated" in cut
    assert "5 rows" in whole and "truncated" not in whole


def test_retry_budget_ends_in_a_clear_error(demo_db: Path) -> None:
    tc = connect(demo_db, ["SELECT nope FROM customers"] * 5, max_retries=1)
    answer = tc.ask("what is nope?")
    assert answer.error_type == "NoAnswerError"
    assert "after 2 attempts" in answer.error and "nope" in answer.error
    assert isinstance(answer.events[-1], ev.Done) and not answer.events[-1].ok


def test_a_repeated_failed_query_is_never_run_or_fed_back_again(demo_db: Path) -> None:
    """At temperature 0 a small model resent the same wrong SQL on every attempt (issue 13):
    a repeat is asked for again with varied sampling, and never run twice."""
    sent: list[dict[str, object]] = []

    class Recording(FakeListChatModel):
        def _call(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
            sent.append({"text": "\n".join(str(m.content) for m in messages), **kwargs})
            return super()._call(messages, stop, run_manager, **kwargs)

    bad = "SELECT nope FROM regions"
    model = Recording(responses=[bad, bad, "SELECT count(*) AS n FROM regions", "There are 5."])
    tc = tablechat.connect(demo_db, llm=model, max_retries=1)
    answer = tc.ask("how many regions")
    assert answer.error is None and answer.rows == [(5,)]
    assert [e.sql for e in answer.events if isinstance(e, ev.SQL)] == [
        "SELECT COUNT(*) AS n FROM regions LIMIT 1001"]  # the bad one never ran
    retries = [e.message for e in answer.events if isinstance(e, ev.Status)
               and e.step == "retry"]
    assert any("repeated" in m for m in retries)
    assert sent[2]["text"].count(bad) == 2  # fed back once (the failed turn), not twice


def test_an_answer_sentence_with_numbers_not_in_the_result_is_replaced(demo_db: Path) -> None:
    """A weak model's "10.3 % higher" (invented) gives way to a sentence from the result."""
    sql = "SELECT count(*) AS n FROM regions"
    invented = connect(demo_db, [sql, "There are 5 regions, 10.3 % more than last year."])
    assert invented.ask("how many regions").text == "The answer is 5 (n)."
    honest = connect(demo_db, [sql, "There are 5 regions."])
    assert honest.ask("how many regions").text == "There are 5 regions."


def test_reply_without_sql_counts_as_a_failed_attempt(demo_db: Path) -> None:
    tc = connect(
        demo_db,
        [
            "I am not sure what you mean.",
            "SQLQuery: SELECT count(*) AS n FROM orders\nSQLResult: 40000",
            "There are 40,000 orders.",
        ],
    )
    answer = tc.ask("how many orders")
    assert answer.rows == [(40000,)] and answer.attempts == 2
    assert answer.chart == {"type": "number", "value": 40000, "label": "n", "title": "n"}


def test_stream_yields_the_typed_events_in_order(demo_db: Path) -> None:
    import asyncio

    tc = connect(demo_db, ["SELECT count(*) AS n FROM regions", "There are 5 regions."])

    async def collect() -> list[ev.Event]:
        return [e async for e in tc.stream("how many regions")]

    events = asyncio.run(collect())
    kinds = [e.kind for e in events]
    assert kinds[0] == "status" and kinds[-1] == "done"
    for kind in ("sql", "table", "chart", "token", "answer"):
        assert kind in kinds
    assert kinds.index("sql") < kinds.index("table") < kinds.index("answer")
    tokens = "".join(e.text for e in events if isinstance(e, ev.Token))
    assert tokens == "There are 5 regions."


class _CallRecordingModel(FakeListChatModel):
    """Records whether each reply was asked for whole (ainvoke) or as a stream (astream)."""

    ways: list[str] = Field(default_factory=list)

    def invoke(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        self.ways.append("whole")
        return super().invoke(*args, **kwargs)

    async def ainvoke(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        self.ways.append("whole")
        return await super().ainvoke(*args, **kwargs)

    async def astream(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        self.ways.append("stream")
        async for chunk in super().astream(*args, **kwargs):
            yield chunk


def _recording(demo_db: Path) -> tuple[tablechat.TableChat, _CallRecordingModel]:
    model = _CallRecordingModel(
        responses=["SELECT count(*) AS n FROM regions", "There are 5 regions."]
    )
    return tablechat.connect(demo_db, llm=model), model


def test_ask_takes_the_answer_whole_not_as_a_stream(demo_db: Path) -> None:
    tc, model = _recording(demo_db)
    answer = tc.ask("how many regions")
    assert answer.text == "There are 5 regions." and answer.rows == [(5,)]
    assert model.ways == ["whole", "whole"]  # the SQL and the sentence
    assert not any(isinstance(e, ev.Token) for e in answer.events)


@pytest.mark.parametrize(("tokens", "ways"), [(True, ["whole", "stream"]),
                                               (False, ["whole", "whole"])])
def test_stream_streams_the_sentence_unless_told_not_to(
    demo_db: Path, tokens: bool, ways: list[str]
) -> None:
    import asyncio

    tc, model = _recording(demo_db)

    async def collect() -> list[ev.Event]:
        return [e async for e in tc.stream("how many regions", tokens=tokens)]

    events = asyncio.run(collect())
    assert model.ways == ways
    pieces = [e.text for e in events if isinstance(e, ev.Token)]
    assert ("".join(pieces) == "There are 5 regions.") is tokens and bool(pieces) is tokens
    (final,) = [e for e in events if isinstance(e, ev.AnswerText)]
    assert final.text == "There are 5 regions."


def test_a_sync_only_model_is_never_called_on_the_loop(demo_db: Path) -> None:
    import threading

    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    threads: dict[str, str] = {}

    class SyncOnly(FakeListChatModel):
        def _call(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
            threads["sync"] = threading.current_thread().name
            return super()._call(messages, stop, run_manager, **kwargs)

    class NativeAsync(FakeListChatModel):
        async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
            threads["async"] = threading.current_thread().name
            text = self.responses[self.i % len(self.responses)]
            self.i += 1
            return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])

    replies = ["SELECT count(*) AS n FROM regions", "There are 5 regions."]
    for model in (SyncOnly(responses=replies), NativeAsync(responses=replies)):
        answer = tablechat.connect(demo_db, llm=model).ask("how many regions")
        assert answer.text == "There are 5 regions." and answer.rows == [(5,)]
    assert threads["async"] == "tablechat-loop"  # an async model runs on the loop itself
    # a blocking one never: LangChain's ainvoke runs it in the loop's executor
    assert threads["sync"] != "tablechat-loop" and threads["sync"].startswith("tablechat")


def test_a_model_with_its_own_ainvoke_is_called_through_it(demo_db: Path) -> None:
    """tablechat calls every model through its public ainvoke (no shortcut past it)."""
    calls: list[str] = []
    replies = ["SELECT count(*) AS n FROM regions", "There are 5 regions."]

    class OwnAinvoke(FakeListChatModel):
        async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
            return self._generate(messages, stop, **kwargs)

        async def ainvoke(self, input, config=None, *, stop=None, **kwargs):  # type: ignore[no-untyped-def]
            calls.append("ainvoke")
            return await super().ainvoke(input, config, stop=stop, **kwargs)

    answer = tablechat.connect(demo_db, llm=OwnAinvoke(responses=replies)).ask("how many regions")
    assert answer.text == "There are 5 regions." and answer.rows == [(5,)]
    assert calls == ["ainvoke", "ainvoke"]  # SQL and answer


def test_a_langchain_run_that_asks_sees_the_model_calls(demo_db: Path) -> None:
    """Called inside a LangChain run (a RunnableLambda here), tablechat's model calls report to
    that run's callbacks, as they would through the model's invoke."""
    from typing import Any

    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.runnables import RunnableLambda

    class Seen(BaseCallbackHandler):
        def __init__(self) -> None:
            self.starts: list[Any] = []

        def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
            self.starts.append(kwargs.get("parent_run_id"))

    class NativeAsync(FakeListChatModel):  # the agenerate path (on the loop, no thread)
        async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
            return self._generate(messages, stop, **kwargs)

    replies = ["SELECT count(*) AS n FROM regions", "There are 5 regions."]
    for model in (FakeListChatModel(responses=replies), NativeAsync(responses=replies)):
        with tablechat.connect(demo_db, llm=model) as tc:
            seen = Seen()
            answer = RunnableLambda(tc.ask).invoke("how many regions",
                                                   config={"callbacks": [seen]})
        assert answer.rows == [(5,)]
        assert len(seen.starts) == 2 and all(parent is not None for parent in seen.starts)


def test_history_reaches_the_prompt(demo_db: Path) -> None:
    model = FakeListChatModel(responses=["SELECT count(*) FROM orders", "ok"])
    prompts: list[str] = []
    original = model._call
    model.__dict__["_call"] = lambda messages, *a, **k: (
        prompts.append(str(messages[0].content)) or original(messages, *a, **k)
    )
    tc = tablechat.connect(demo_db, llm=model)
    history = [
        {"role": "user", "content": "revenue in 2023"},
        {"role": "assistant", "content": "It was 3.9M.", "sql": "SELECT 1"},
    ]
    tc.ask("and in 2024?", history=history)
    assert "revenue in 2023" in prompts[0] and "It was 3.9M." in prompts[0]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("SELECT 1", "SELECT 1"),
        ("```sql\nSELECT a FROM t\n```\nThis returns a.", "SELECT a FROM t"),
        ("```\nSELECT a FROM t\n```", "SELECT a FROM t"),
        ("SQLQuery: SELECT a FROM t\nSQLResult: 1\nAnswer: one", "SELECT a FROM t"),
        ("Sure! Here is the query:\n\nSELECT a\nFROM t;\n\nIt lists a.", "SELECT a\nFROM t"),
        ('{"sql": "SELECT 2"}', "SELECT 2"),
        ("<think>use t</think>SELECT a FROM t", "SELECT a FROM t"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH x AS (SELECT 1) SELECT * FROM x"),
        ("I cannot answer that.", ""),
    ],
)
def test_sql_extraction(reply: str, expected: str) -> None:
    from tablechat.agent.extract import extract_sql

    assert extract_sql(reply) == expected


def test_the_sql_grammar_names_only_the_schemas_tables_and_columns(demo_db: Path) -> None:
    import re

    from tablechat.agent.grammar import sql_grammar

    with tablechat.connect(demo_db) as tc:
        snap = tc.snapshot()
    grammar = sql_grammar(snap, ["regions", "customers"])
    rules = dict(line.split(" ::= ", 1) for line in grammar.splitlines())
    froms = {lit for name, body in rules.items() if name.startswith("from-")
             for lit in re.findall(r'"([^"]+)"', body)}
    tables = {w for f in froms for w in re.findall(r"(?:^| JOIN )(\w+)", f)}
    columns = {lit for name, body in rules.items() if name.startswith("cols-")
               for lit in re.findall(r'"([^"]+)"', body)}
    assert tables == {"regions", "customers"}  # only the tables shown to the model
    assert columns == {c.name for t in ("regions", "customers") for c in snap.tables[t].columns}
    qualified = {q for name, body in rules.items() if name.startswith("col-")
                 for q in re.findall(r'"([^"]+)\."', body)}
    assert qualified <= tables

"""The SQL step on llama.cpp (small local models under the schema's grammar): the compact
prompt (one line per table, one instruction, the question last, the first part byte-identical
between questions) and the reply limits, as request bodies in llama.cpp's dialect, recorded by
the project's fake OpenAI-protocol server. tests/test_real_model.py runs the same with real
weights; tests/test_vllm.py has vLLM's dialect."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tablechat
from tablechat import _loop
from tablechat import events as ev
from tablechat.agent.client import LLMClient
from tablechat.agent.compact_schema import MAX_COLUMNS, compact_schema, compact_table, is_key
from tablechat.agent.sql_agent import LINKED_TABLES, SQLAgent
from tablechat.answer import Usage
from tablechat.backends import LlamaCppBackend
from tablechat.config import load_settings
from tablechat.sql.schema import Column, SchemaSnapshot, TableInfo
from tests.support.fake_vllm_client import FakeVLLM

SQL_MARK = "Write one duckdb SELECT query"
QUESTION_MARK = "Question: How many orders"
ANSWER_MARK = "rows:\n<result>"


@pytest.fixture
def demo(demo_db: Path) -> Iterator[tablechat.TableChat]:
    with tablechat.connect(demo_db) as tc:
        yield tc


def _agent(server: FakeVLLM, **settings: Any) -> tuple[SQLAgent, LLMClient, Any]:
    config = load_settings(llm_url=server.url, llm_model=server.model, llm_max_retries=0,
                           llm_timeout=10, **settings)
    backend = LlamaCppBackend(config)
    client = LLMClient(backend.build_model(server.model), structured=True, timeout=10,
                       backend=backend)
    return SQLAgent(client, max_model_len=4096, max_tokens=config.llm_max_tokens), client, config


def _ask(tc: tablechat.TableChat, agent: SQLAgent, config: Any, question: str) -> list[Any]:
    ctx = tc.context(question, stream_tokens=False)
    ctx.settings = config

    async def collect() -> list[Any]:
        return [e async for e in agent.run(ctx, Usage())]

    return _loop.run_sync(collect())


def _requests(server: FakeVLLM, mark: str) -> list[dict[str, Any]]:
    """The requests of one step: the answer continues the SQL conversation, so a step is told
    by its last message."""
    return [r["body"] for r in server.chat_requests()
            if mark in str(r["body"]["messages"][-1].get("content"))]


def _script(server: FakeVLLM) -> None:
    server.script(rules=[
        {"match": ANSWER_MARK, "on": "prompt", "reply": {"content": "There are 40000 orders."}},
        {"match": SQL_MARK, "on": "prompt", "reply": {"content": "SELECT count(*) FROM orders"}},
    ])


def test_the_sql_and_answer_reply_limits_are_sent_in_llamacpps_dialect(
        demo: tablechat.TableChat, fake_vllm: FakeVLLM) -> None:
    """The SQL reply is limited to ``llm_sql_max_tokens`` and the sentence to
    ``llm_answer_max_tokens``, each as both ``max_tokens`` (what llama.cpp reads) and
    ``max_completion_tokens``, beside the schema's grammar; not the 512 of any reply."""
    _script(fake_vllm)
    agent, client, config = _agent(fake_vllm, llm_sql_max_tokens=100,
                                   llm_answer_max_tokens=40)
    try:
        events = _ask(demo, agent, config, "How many orders are there?")
    finally:
        _loop.run_sync(client.aclose())
    assert [e.rows for e in events if isinstance(e, ev.Table)] == [[(40000,)]]
    (sql,) = _requests(fake_vllm, QUESTION_MARK)
    assert sql["max_tokens"] == 100 and sql["max_completion_tokens"] == 100
    assert "root ::=" in sql["grammar"]
    (answer,) = _requests(fake_vllm, ANSWER_MARK)
    assert answer["max_tokens"] == 40 and answer["max_completion_tokens"] == 40
    assert "grammar" not in answer


def test_the_reply_limits_default_to_a_query_and_a_sentence() -> None:
    settings = load_settings()
    assert settings.llm_sql_max_tokens <= 160 and settings.llm_answer_max_tokens <= 96
    assert settings.llm_sql_max_tokens < settings.llm_max_tokens


def test_the_compact_prompt_is_stable_then_the_questions_tables_and_the_question(
        demo: tablechat.TableChat, fake_vllm: FakeVLLM) -> None:
    """Under the grammar the SQL prompt is an instruction and a worked example (a count over
    one table, as a turn of its own), the same for every question on the database (llama.cpp's
    prefix cache serves it); then the question's own tables, one line each (no DDL, no
    business definitions, no rules section), and the question. The grammar names only those
    tables, and only the numbers the question gives."""
    _script(fake_vllm)
    agent, client, config = _agent(fake_vllm)
    try:
        _ask(demo, agent, config, "How many orders were placed in 2023?")
        _ask(demo, agent, config, "How many customers live in Germany?")
    finally:
        _loop.run_sync(client.aclose())
    first, second = (r["body"] for r in fake_vllm.chat_requests()
                     if r["body"].get("grammar"))
    assert first["messages"][:2] == second["messages"][:2]  # the stable head
    head, example, turn = first["messages"]
    assert head["content"].startswith("Write one duckdb SELECT query")
    assert example == {"role": "assistant", "content": "SELECT count(*) FROM categories;"}
    snapshot = demo.snapshot()
    orders = compact_table(snapshot.tables["orders"])
    assert orders == ("orders(id, customer_id, store_id, order_date, status ('cancelled', "
                      "'completed', 'returned', 'shipped'), channel ('in-store', 'online', "
                      "'phone'))")
    lines = turn["content"].strip().split("\n")
    assert lines[0] == "Tables:" and orders in lines
    assert lines[-1] == "Question: How many orders were placed in 2023?"
    assert len(lines) - 2 <= LINKED_TABLES
    assert len(second["messages"][2]["content"].strip().split("\n")) - 2 <= LINKED_TABLES
    text = "".join(m["content"] for m in first["messages"])
    assert "CREATE TABLE" not in text and "## Rules" not in text and "revenue" not in text
    assert len(text) < 800  # the long form was ~8,000 characters for this schema
    # the grammar: the linked table only, and the question's values only (a year in a date
    # rule, where there are dates; no other number)
    assert '"orders"' in first["grammar"] and '"products"' not in first["grammar"]
    assert "date ::= \"DATE '\" (\"2023\")" in first["grammar"]
    assert "number ::=" not in first["grammar"]
    assert "'Germany'" in second["grammar"] and "number ::=" not in second["grammar"]


def test_a_larger_model_can_have_the_full_prompt_and_json_instead(
        demo: tablechat.TableChat, fake_vllm: FakeVLLM) -> None:
    """``llm_sql_grammar=False`` (a 7B coder on llama.cpp): no grammar, no compact prompt; the
    SQL reply is constrained by JSON in llama.cpp's dialect (``response_format``)."""
    fake_vllm.script(rules=[{"match": "How many orders", "on": "prompt",
                             "reply": {"content": '{"sql": "SELECT count(*) FROM orders"}'}}])
    agent, client, config = _agent(fake_vllm, llm_sql_grammar=False)
    try:
        events = _ask(demo, agent, config, "How many orders are there?")
    finally:
        _loop.run_sync(client.aclose())
    assert [e.rows for e in events if isinstance(e, ev.Table)] == [[(40000,)]]
    sql = fake_vllm.chat_requests()[0]["body"]
    assert "grammar" not in sql
    assert sql["response_format"]["type"] == "json_schema"
    assert SQL_MARK not in str(sql["messages"])  # the full prompt, not the compact one


def test_a_wide_tables_line_is_bounded_and_shows_the_columns_the_question_names() -> None:
    """A 500-column upload made the "compact" prompt longer than a small model's context,
    and the compact prompt has no shrink-and-retry: a line shows at most ``MAX_COLUMNS``
    columns, the keys and those the question names first, and says there are more."""
    names = [f"c{k}" for k in range(500)]
    names[437] = "shipping_cost"
    wide = TableInfo("wide", [Column("id", "INTEGER", primary_key=True),
                              *[Column(name, "VARCHAR") for name in names]])
    snapshot = SchemaSnapshot("duckdb", {"wide": wide})
    line = compact_schema(snapshot, ["wide"], "What is the average shipping cost?")
    shown = line[len("wide("):-len(", ...)")].split(", ")
    assert line.endswith(", ...)") and len(shown) == MAX_COLUMNS
    assert shown[:3] == ["id", "c0", "c1"] and "shipping_cost" in shown
    narrow = TableInfo("t", [Column("a", "INTEGER"), Column("b", "VARCHAR")])
    assert compact_table(narrow) == "t(a, b)"  # a narrow table is shown whole, no "..."


def test_the_counted_table_is_linked_and_the_answer_repeats_the_models_own_sql(
        demo: tablechat.TableChat, fake_vllm: FakeVLLM) -> None:
    """"How many orders came from the Berlin store?": the rows counted are orders', so orders
    is among the linked tables whichever table "Berlin" points at. The answer turn repeats
    the SQL as the model wrote it, not the guard's rewrite (its LIMIT): the slot holds the
    model's tokens, and a rewrite is prefilled again."""
    written = ("SELECT count(*) FROM orders JOIN stores ON stores.id = orders.store_id "
               "WHERE stores.city = 'Berlin'")
    fake_vllm.script(rules=[
        {"match": ANSWER_MARK, "on": "prompt", "reply": {"content": "That many."}},
        {"match": SQL_MARK, "on": "prompt", "reply": {"content": written}},
    ])
    agent, client, config = _agent(fake_vllm)
    try:
        events = _ask(demo, agent, config, "How many orders came from the Berlin store?")
    finally:
        _loop.run_sync(client.aclose())
    checked = [e.sql for e in events if isinstance(e, ev.SQL)]
    assert checked and checked[0] != written  # the guard rewrote it (its LIMIT)
    sql_turn = _requests(fake_vllm, "Question: How many orders came")[0]["messages"][-1]
    tables = [line.split("(")[0] for line in sql_turn["content"].split("\n")[1:-1]]
    assert "orders" in tables and "stores" in tables
    answer = _requests(fake_vllm, ANSWER_MARK)[0]["messages"]
    assert answer[-2] == {"role": "assistant", "content": written}


def test_a_key_is_told_by_its_name_or_the_schema() -> None:
    assert is_key(Column("id", "INTEGER")) and is_key(Column("customer_id", "INTEGER"))
    assert is_key(Column("customerId", "INTEGER")) and is_key(Column("code", "VARCHAR",
                                                                     primary_key=True))
    assert not is_key(Column("paid", "BOOLEAN")) and not is_key(Column("valid", "BOOLEAN"))

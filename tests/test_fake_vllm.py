"""Tests of the fake vLLM server itself, through the real `openai` and LangChain clients."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI
from langchain_openai._compat import httpx as sdk_httpx

from tests.support.fake_vllm import reply_pieces
from tests.support.fake_vllm_client import FakeVLLM, FakeVLLMError

pytest_plugins = ["tests.support.fixtures"]

MESSAGES = [
    {"role": "system", "content": "You write DuckDB SQL."},
    {"role": "user", "content": "How many customers are there?"},
]
SQL = "SELECT  c.name,\n  SUM(o.total) AS revenue -- für 2024\nFROM customers c\t JOIN orders o "


def _client(server: FakeVLLM, **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(**{**server.openai_kwargs(), **kwargs})


def _http() -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=30)


def _wait_for(predicate, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# --------------------------------------------------------------------------- plain HTTP
def test_health_models_version_metrics(fake_vllm: FakeVLLM) -> None:
    with _http() as http:
        health = http.get(f"{fake_vllm.base}/health")
        assert health.status_code == 200
        assert health.content == b""
        models = http.get(f"{fake_vllm.url}/models").json()
        metrics = http.get(f"{fake_vllm.base}/metrics")
        missing = http.get(f"{fake_vllm.url}/completions_nope")
    assert models["object"] == "list"
    (card,) = models["data"]
    assert card["id"] == card["root"] == "fake-sql-model"
    assert card["owned_by"] == "vllm"
    assert card["max_model_len"] == 8192
    assert card["parent"] is None
    assert "vllm:num_requests_running" in metrics.text
    assert metrics.headers["content-type"].startswith("text/plain")
    assert missing.status_code == 404


def test_health_status_can_be_scripted(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(health_status=503)
    with _http() as http:
        assert http.get(f"{fake_vllm.base}/health").status_code == 503


def test_tokenize_counts_prompt_and_messages(fake_vllm: FakeVLLM) -> None:
    with _http() as http:
        prompt = http.post(
            f"{fake_vllm.base}/tokenize",
            json={"model": "fake-sql-model", "prompt": "SELECT a, b FROM t"},
        )
        chat = http.post(
            f"{fake_vllm.base}/tokenize", json={"model": "fake-sql-model", "messages": MESSAGES}
        )
    body = prompt.json()
    assert body["count"] == 6 == len(body["tokens"])
    assert body["max_model_len"] == 8192
    assert all(isinstance(t, int) for t in body["tokens"])
    with _client(fake_vllm) as client:
        completion = client.chat.completions.create(model="fake-sql-model", messages=MESSAGES)
    assert completion.usage is not None
    assert chat.json()["count"] == completion.usage.prompt_tokens


def test_reply_pieces_rejoin_exactly() -> None:
    for text in [SQL, "", " ", "a", "  lead and trail  \n", "x\n\n\ty", "ünïcödé — ok?!"]:
        assert "".join(reply_pieces(text)) == text


def test_stream_is_framed_like_vllm(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"content": "SELECT 1"}])
    payload = {
        "model": "fake-sql-model",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with (
        _http() as http,
        http.stream("POST", f"{fake_vllm.url}/chat/completions", json=payload) as resp,
    ):
        assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert resp.headers["transfer-encoding"] == "chunked"
        raw = resp.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events[:-1])
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]] == ["SELECT", " 1"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 2
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1


# ----------------------------------------------------------------------- openai client
def test_openai_non_stream_reply_and_usage(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"content": SQL}])
    with _client(fake_vllm) as client:
        completion = client.chat.completions.create(model="fake-sql-model", messages=MESSAGES)
    assert completion.object == "chat.completion"
    assert completion.model == "fake-sql-model"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == SQL
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.completion_tokens == len(reply_pieces(SQL))
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens > 0


def test_openai_stream_reassembles_exact_content_with_usage_last(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"content": SQL}])
    with _client(fake_vllm) as client:
        chunks = list(
            client.chat.completions.create(
                model="fake-sql-model",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == SQL
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == len(reply_pieces(SQL))  # one token per chunk
    assert chunks[-2].choices[0].finish_reason == "stop"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == len(reply_pieces(SQL))
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_include_usage_sends_no_usage(fake_vllm: FakeVLLM) -> None:
    with _client(fake_vllm) as client:
        chunks = list(
            client.chat.completions.create(model="fake-sql-model", messages=MESSAGES, stream=True)
        )
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_max_tokens_truncates_with_finish_reason_length(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(default={"content": "SELECT a, b, c FROM t"})
    with _client(fake_vllm) as client:
        completion = client.chat.completions.create(
            model="fake-sql-model", messages=MESSAGES, max_tokens=3
        )
    assert completion.choices[0].message.content == "SELECT a,"
    assert completion.choices[0].finish_reason == "length"


def test_429_then_success_with_openai_retries(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(
        replies=[
            {"status": 429, "retry_after": 0.01, "error": "slow down"},
            {"content": "SELECT 2"},
        ]
    )
    with _client(fake_vllm, max_retries=2) as client:
        completion = client.chat.completions.create(model="fake-sql-model", messages=MESSAGES)
    assert completion.choices[0].message.content == "SELECT 2"
    log = fake_vllm.chat_requests()
    assert [r["status"] for r in log] == [429, 200]
    assert [r["headers"]["x-stainless-retry-count"] for r in log] == ["0", "1"]


def test_error_body_is_openai_shaped(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"status": 503, "error": "engine asleep", "retry_after": 7}])
    with _http() as http:
        resp = http.post(
            f"{fake_vllm.url}/chat/completions",
            json={"model": "fake-sql-model", "messages": MESSAGES},
        )
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "7"
    assert resp.json() == {
        "error": {
            "message": "engine asleep",
            "type": "ServiceUnavailableError",
            "param": None,
            "code": 503,
        }
    }


def test_malformed_sse_raises(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"content": SQL, "fault": "malformed_sse"}])
    with _client(fake_vllm) as client, pytest.raises(json.JSONDecodeError):
        for _ in client.chat.completions.create(
            model="fake-sql-model", messages=MESSAGES, stream=True
        ):
            pass


def test_error_event_mid_stream_is_an_api_error(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"content": "one two three four", "fault": "error_event"}])
    received: list[str] = []
    with _client(fake_vllm) as client, pytest.raises(openai.APIError, match="engine died"):
        for chunk in client.chat.completions.create(
            model="fake-sql-model", messages=MESSAGES, stream=True
        ):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "one two"


def test_request_log_names_the_client_connection(fake_vllm: FakeVLLM) -> None:
    with _client(fake_vllm) as client:  # one keep-alive connection
        for _ in range(2):
            client.chat.completions.create(model="fake-sql-model", messages=MESSAGES)
    first, second = fake_vllm.chat_requests()
    assert isinstance(first["client_port"], int) and first["client_port"] > 0
    assert second["client_port"] == first["client_port"]


def test_drop_mid_stream_raises_connection_error(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"content": "one two three four", "fault": "drop"}])
    received: list[str] = []
    with _client(fake_vllm) as client, pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(
            model="fake-sql-model", messages=MESSAGES, stream=True
        ):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "one two"  # fault_after defaults to half the tokens


def test_drop_without_response_raises_connection_error(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"fault": "drop"}])
    with _client(fake_vllm) as client, pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="fake-sql-model", messages=MESSAGES)


def test_stall_mid_stream_hits_the_read_timeout(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"content": "a b c d", "fault": "stall"}])
    with _client(fake_vllm, timeout=0.5) as client, pytest.raises(openai.APITimeoutError):
        for _ in client.chat.completions.create(
            model="fake-sql-model", messages=MESSAGES, stream=True
        ):
            pass


def test_hang_does_not_block_other_requests(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(
        rules=[{"match": "hang", "reply": {"fault": "hang"}}], default={"content": "SELECT 3"}
    )

    def ask(question: str) -> str | None:
        with _client(fake_vllm) as client:
            completion = client.chat.completions.create(
                model="fake-sql-model", messages=[{"role": "user", "content": question}]
            )
        return completion.choices[0].message.content

    with ThreadPoolExecutor(1) as pool:
        hanging = pool.submit(ask, "please hang")
        _wait_for(lambda: fake_vllm.chat_requests(), "the hanging request to arrive")
        assert ask("anything else") == "SELECT 3"
        assert not hanging.done()
        fake_vllm.reset()  # releases the hanging request: its connection is closed
        with pytest.raises(openai.APIConnectionError):
            hanging.result(timeout=30)


def test_hang_ends_when_client_gives_up(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"fault": "hang"}])
    with _client(fake_vllm, timeout=0.3) as client, pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="fake-sql-model", messages=MESSAGES)
    entry = _wait_for(
        lambda: [r for r in fake_vllm.chat_requests() if r["finished_at"]], "the hang to end"
    )
    assert entry[0]["client_disconnected"] is True


def test_client_disconnect_mid_stream_is_recorded(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"content": "a b c d e f g h", "token_delay": 0.2}])
    with _client(fake_vllm) as client:
        stream = client.chat.completions.create(
            model="fake-sql-model", messages=MESSAGES, stream=True
        )
        next(iter(stream))
        stream.close()
    entry = _wait_for(
        lambda: [r for r in fake_vllm.chat_requests() if r["finished_at"]], "the stream to end"
    )
    assert entry[0]["client_disconnected"] is True


def test_api_key_guards_v1_only(fake_vllm_factory) -> None:
    server = fake_vllm_factory(api_key="sekret")
    with _http() as http:
        assert http.get(f"{server.base}/health").status_code == 200
        assert http.get(f"{server.base}/metrics").status_code == 200
        assert http.post(f"{server.base}/tokenize", json={"prompt": "x"}).status_code == 200
        denied = http.get(f"{server.url}/models")
        wrong = http.get(f"{server.url}/models", headers={"Authorization": "Bearer nope"})
        allowed = http.get(f"{server.url}/models", headers={"Authorization": "Bearer sekret"})
    assert denied.status_code == wrong.status_code == 401
    assert denied.json() == {"error": "Unauthorized"}  # vLLM's exact body
    assert allowed.status_code == 200
    with _client(server, api_key="nope") as client, pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="fake-sql-model", messages=MESSAGES)
    with _client(server) as client:
        assert (
            client.chat.completions.create(model="fake-sql-model", messages=MESSAGES)
            .choices[0]
            .message.content
        )


def test_unknown_model_is_404_like_vllm(fake_vllm: FakeVLLM) -> None:
    with _client(fake_vllm) as client, pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert "The model `gpt-4o` does not exist." in str(err.value)


def test_context_length_is_enforced(fake_vllm_factory) -> None:
    server = fake_vllm_factory(max_model_len=40)
    long = [{"role": "user", "content": "word " * 50}]
    with _client(server) as client:
        with pytest.raises(openai.BadRequestError, match="maximum context length is 40"):
            client.chat.completions.create(model="fake-sql-model", messages=long)
        with pytest.raises(openai.BadRequestError, match=r"'max_tokens' .* is too large"):
            client.chat.completions.create(model="fake-sql-model", messages=MESSAGES, max_tokens=39)


def test_extra_body_lands_top_level_in_request_log(fake_vllm: FakeVLLM) -> None:
    schema = {"type": "object", "properties": {"sql": {"type": "string"}}}
    with _client(fake_vllm) as client:
        client.chat.completions.create(
            model="fake-sql-model",
            messages=MESSAGES,
            extra_body={"structured_outputs": {"json": schema}, "top_k": 20},
        )
    (entry,) = fake_vllm.chat_requests()
    assert entry["method"] == "POST"
    assert entry["body"]["structured_outputs"] == {"json": schema}
    assert entry["body"]["top_k"] == 20
    assert entry["body"]["messages"] == MESSAGES
    assert entry["headers"]["authorization"] == "Bearer EMPTY"
    assert entry["timestamp"] <= entry["first_token_sent_at"] <= entry["finished_at"]
    assert entry["reply_source"] == "default"


def test_reject_structured_outputs(fake_vllm_factory) -> None:
    server = fake_vllm_factory(reject_structured_outputs=True)
    with _client(server) as client:
        with pytest.raises(openai.BadRequestError, match="structured_outputs"):
            client.chat.completions.create(
                model="fake-sql-model",
                messages=MESSAGES,
                extra_body={"structured_outputs": {"choice": ["a", "b"]}},
            )
        ok = client.chat.completions.create(model="fake-sql-model", messages=MESSAGES)
    assert ok.choices[0].message.content == "SELECT 1"


def test_rules_answer_by_regex_regardless_of_order(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(
        rules=[
            {"match": r"(?i)customers", "reply": {"content": "SELECT count(*) FROM customers"}},
            {"match": r"(?i)orders", "replies": [{"content": "bad"}, {"content": "good"}]},
            {"match": r"DuckDB", "on": "prompt", "reply": {"content": "from the system"}},
        ],
        default={"content": "SELECT 0"},
    )
    questions = ["How many customers?", "Count orders", "Count orders", "hello"] * 3

    def ask(question: str) -> str | None:
        with _client(fake_vllm) as client:
            return (
                client.chat.completions.create(
                    model="fake-sql-model",
                    messages=[{"role": "user", "content": question}],
                )
                .choices[0]
                .message.content
            )

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, questions))
    assert [a for q, a in zip(questions, answers, strict=True) if "customers" in q] == [
        "SELECT count(*) FROM customers"
    ] * 3
    orders = [a for q, a in zip(questions, answers, strict=True) if "orders" in q]
    assert sorted(orders) == ["bad"] + ["good"] * 5  # a rule's replies run out to the last
    assert [a for q, a in zip(questions, answers, strict=True) if q == "hello"] == ["SELECT 0"] * 3
    assert ask_with_system(fake_vllm) == "from the system"


def ask_with_system(server: FakeVLLM) -> str | None:
    with _client(server) as client:
        return (
            client.chat.completions.create(
                model="fake-sql-model",
                messages=[*MESSAGES[:1], {"role": "user", "content": "hi"}],
            )
            .choices[0]
            .message.content
        )


def test_queued_replies_then_default(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(
        replies=[{"content": "first"}, {"content": "second"}], default={"content": "fallback"}
    )
    with _client(fake_vllm) as client:
        answers = [
            client.chat.completions.create(model="fake-sql-model", messages=MESSAGES)
            .choices[0]
            .message.content
            for _ in range(4)
        ]
    assert answers == ["first", "second", "fallback", "fallback"]
    fake_vllm.reset()
    assert fake_vllm.requests() == []


def test_bad_script_is_refused(fake_vllm: FakeVLLM) -> None:
    with pytest.raises(FakeVLLMError, match="unknown reply keys"):
        fake_vllm.script(replies=[{"contnet": "typo"}])
    with pytest.raises(FakeVLLMError, match="unknown fault"):
        fake_vllm.script(replies=[{"fault": "explode"}])
    with pytest.raises(FakeVLLMError, match="bad regex"):
        fake_vllm.script(rules=[{"match": "(", "reply": {}}])


# --------------------------------------------------------------------------- LangChain
def test_langchain_invoke_and_stream_usage(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"content": SQL}, {"content": SQL}])
    llm = ChatOpenAI(**fake_vllm.chat_openai_kwargs())
    message = llm.invoke(MESSAGES)
    assert message.content == SQL
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] == len(reply_pieces(SQL))

    aggregate: AIMessageChunk | None = None
    for chunk in llm.stream(MESSAGES):
        aggregate = chunk if aggregate is None else aggregate + chunk
    assert aggregate is not None
    assert aggregate.content == SQL
    assert aggregate.usage_metadata is not None
    assert aggregate.usage_metadata["output_tokens"] == len(reply_pieces(SQL))
    assert aggregate.usage_metadata["input_tokens"] == message.usage_metadata["input_tokens"]
    assert aggregate.response_metadata["finish_reason"] == "stop"
    streamed = fake_vllm.chat_requests()[-1]["body"]
    assert streamed["stream"] is True
    assert streamed["stream_options"] == {"include_usage": True}


async def test_langchain_astream(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"content": SQL, "token_delay": 0.001}])
    # An explicit client: ChatOpenAI otherwise shares one cached async HTTP client per
    # (base_url, timeout) across event loops, and pytest-asyncio gives each test a new loop.
    async with sdk_httpx.AsyncClient() as http_client:
        llm = ChatOpenAI(**fake_vllm.chat_openai_kwargs(http_async_client=http_client))
        aggregate: AIMessageChunk | None = None
        async for chunk in llm.astream(MESSAGES):
            aggregate = chunk if aggregate is None else aggregate + chunk
    assert aggregate is not None
    assert aggregate.content == SQL
    assert aggregate.usage_metadata is not None
    assert aggregate.usage_metadata["total_tokens"] > aggregate.usage_metadata["output_tokens"]


def test_langchain_extra_body_lands_top_level(fake_vllm: FakeVLLM) -> None:
    so = {"structured_outputs": {"choice": ["sql", "chat"]}}
    llm = ChatOpenAI(**fake_vllm.chat_openai_kwargs(extra_body=so))
    llm.invoke(MESSAGES)
    llm.invoke(MESSAGES, extra_body={"top_k": 5})  # per-call extra_body replaces the ctor's
    first, second = fake_vllm.chat_requests()
    assert first["body"]["structured_outputs"] == {"choice": ["sql", "chat"]}
    assert "extra_body" not in first["body"]
    assert second["body"]["top_k"] == 5
    assert "structured_outputs" not in second["body"]


def test_langchain_errors(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(default={"status": 500, "retry_after": 0.01})
    llm = ChatOpenAI(**fake_vllm.chat_openai_kwargs(max_retries=1))
    with pytest.raises(openai.InternalServerError):
        llm.invoke(MESSAGES)
    assert len(fake_vllm.chat_requests()) == 2  # first try + one retry

    fake_vllm.script(replies=[{"content": SQL, "fault": "malformed_sse"}])
    with pytest.raises(json.JSONDecodeError):
        list(llm.stream(MESSAGES))

    fake_vllm.script(replies=[{"content": SQL, "fault": "drop"}])
    with pytest.raises(openai.APIConnectionError):
        list(llm.stream(MESSAGES))


def test_langchain_tool_calls(fake_vllm: FakeVLLM) -> None:
    call = {"name": "run_sql", "arguments": {"sql": "SELECT 1"}}
    fake_vllm.script(replies=[{"content": "", "tool_calls": [call]}] * 2)

    def run_sql(sql: str) -> str:
        """Run a query."""
        return sql

    llm = ChatOpenAI(**fake_vllm.chat_openai_kwargs()).bind_tools([run_sql])
    message = llm.invoke(MESSAGES)
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("run_sql", {"sql": "SELECT 1"})
    ]
    aggregate = None
    for chunk in llm.stream(MESSAGES):
        aggregate = chunk if aggregate is None else aggregate + chunk
    assert aggregate is not None
    assert [(c["name"], c["args"]) for c in aggregate.tool_calls] == [
        ("run_sql", {"sql": "SELECT 1"})
    ]
    assert fake_vllm.chat_requests()[0]["body"]["tools"][0]["function"]["name"] == "run_sql"


def test_concurrent_streams_are_served_in_parallel(fake_vllm: FakeVLLM) -> None:
    # Each stream waits for a barrier the others must reach, so a server that served one
    # request at a time would break the barrier (timeout) instead of finishing.
    fake_vllm.script(default={"content": "a b c", "token_delay": 0.01})
    barrier = threading.Barrier(4, timeout=30)

    def stream() -> str:
        with _client(fake_vllm) as client:
            parts = []
            for i, chunk in enumerate(
                client.chat.completions.create(
                    model="fake-sql-model",
                    messages=MESSAGES,
                    stream=True,
                )
            ):
                if i == 1:
                    barrier.wait()
                parts.append(chunk.choices[0].delta.content or "")
            return "".join(parts)

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda _: stream(), range(4))) == ["a b c"] * 4

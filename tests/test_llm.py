"""The LLM client (tablechat.llm): settings → ChatOpenAI, probing, retries, error messages, and
the aiohttp transport under ChatOpenAI (tablechat.openai_transport).

The HTTP path runs against the fake vLLM server (tests/support/fake_vllm.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import openai
import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI

from tablechat import _loop
from tablechat.agent.client import LLMClient
from tablechat.answer import Usage
from tablechat.config import load_settings
from tablechat.errors import ConfigurationError, LLMUnavailableError
from tablechat.llm import (
    build_chat_model,
    failure_kind,
    llm_error,
    probe_server,
    resolve_model_name,
    server_root,
)
from tablechat.openai_transport import (
    ChatCompletionsTransport,
    SSEStream,
    backoff,
    retry_delay,
)
from tests.support.fake_vllm_client import FakeVLLM

T = TypeVar("T")


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


_CLIENTS: list[LLMClient] = []


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while _CLIENTS:
        _loop.run_sync(_CLIENTS.pop().aclose())


def client_for(server: FakeVLLM, **overrides: object) -> LLMClient:
    options: dict[str, object] = {"llm_url": server.url, "llm_model": server.model,
                                  "llm_max_retries": 0, "llm_timeout": 10, **overrides}
    settings = load_settings(**options)
    model = build_chat_model(settings)
    client = LLMClient(model, structured=True, timeout=settings.llm_timeout)
    _CLIENTS.append(client)
    return client


def invoke(client: LLMClient, text: str = "hi", **kwargs: object) -> tuple[str, Usage]:
    usage = Usage()
    # ChatOpenAI's async client binds to its first event loop: use tablechat's one loop
    reply = _loop.run_sync(client.invoke([HumanMessage(text)], usage, step="test", **kwargs))
    return reply, usage


# -- settings → ChatOpenAI ----------------------------------------------------------------------
def test_build_chat_model_uses_every_setting() -> None:
    settings = load_settings(llm_url="http://127.0.0.1:9/v1", llm_model="m", llm_api_key="k",
                             llm_timeout=7, llm_connect_timeout=2, llm_max_retries=4,
                             llm_max_tokens=99, llm_temperature=0.3)
    model = build_chat_model(settings)
    assert isinstance(model, ChatOpenAI)
    assert model.model_name == "m" and model.openai_api_base == "http://127.0.0.1:9/v1"
    assert model.openai_api_key is not None and model.openai_api_key.get_secret_value() == "k"
    assert model.max_retries == 4 and model.max_tokens == 99 and model.temperature == 0.3
    assert model.stream_usage is True and model.use_responses_api is False
    # openai>=3 runs on httpx2: the timeout must be its type, or the client breaks
    assert isinstance(model.request_timeout, openai.Timeout)
    assert model.request_timeout.read == 7 and model.request_timeout.connect == 2


def test_build_chat_model_needs_a_url_and_a_model() -> None:
    with pytest.raises(ConfigurationError):
        build_chat_model(load_settings())
    with pytest.raises(ConfigurationError, match="http"):
        build_chat_model(load_settings(llm_url="ftp://x", llm_model="m"))
    with pytest.raises(LLMUnavailableError, match="TABLECHAT_LLM_MODEL"):
        build_chat_model(load_settings(llm_url="http://127.0.0.1:9/v1"))


def test_model_name_defaults_to_the_first_listed(fake_vllm: FakeVLLM) -> None:
    info = probe_server(fake_vllm.url)
    assert resolve_model_name(load_settings(), info) == "fake-sql-model"
    assert resolve_model_name(load_settings(llm_model="other"), info) == "other"


# -- probing ------------------------------------------------------------------------------------
def test_probe_reads_models_vllm_and_context_length(fake_vllm: FakeVLLM) -> None:
    info = probe_server(fake_vllm.url)
    assert info.reachable and info.models == ("fake-sql-model",)
    assert info.is_vllm and info.max_model_len == 8192 and info.health_status == 200
    paths = [r["path"] for r in fake_vllm.requests()]
    assert paths == ["/v1/models", "/health"]
    assert server_root(fake_vllm.url) == fake_vllm.base


def test_probe_dead_server_says_so_quickly() -> None:
    info = probe_server(closed_port_url(), timeout=2)
    assert not info.reachable
    assert "refused" in info.error


def test_probe_unhealthy_engine_is_unreachable(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(health_status=503)
    info = probe_server(fake_vllm.url)
    assert not info.reachable and "503" in info.error


def test_probe_with_api_key(fake_vllm_factory) -> None:
    server = fake_vllm_factory(api_key="sesame")
    assert not probe_server(server.url).reachable
    assert "API key" in probe_server(server.url, "wrong").error
    assert probe_server(server.url, "sesame").reachable


# -- retries (openai SDK, max_retries=settings.llm_max_retries) ----------------------------------
def test_500_then_success_is_retried(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"status": 500, "error": "engine hiccup"}, {"content": "ok"}])
    reply, usage = invoke(client_for(fake_vllm, llm_max_retries=2))
    assert reply == "ok" and usage.llm_calls == 1
    log = fake_vllm.chat_requests()
    assert [r["status"] for r in log] == [500, 200]
    assert [r["headers"]["x-stainless-retry-count"] for r in log] == ["0", "1"]


def test_503_then_success_is_retried(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"status": 503}, {"status": 502}, {"content": "ok"}])
    assert invoke(client_for(fake_vllm, llm_max_retries=2))[0] == "ok"
    assert len(fake_vllm.chat_requests()) == 3


def test_429_waits_for_retry_after(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"status": 429, "retry_after": 1.2, "error": "busy"},
                              {"content": "ok"}])
    assert invoke(client_for(fake_vllm, llm_max_retries=1))[0] == "ok"
    first, second = fake_vllm.chat_requests()
    assert first["status"] == 429
    # the SDK's own backoff is 0.375-0.5 s: a later retry means Retry-After was honoured
    assert second["timestamp"] - first["timestamp"] >= 1.1


def test_dropped_connection_is_retried(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"content": "lost", "fault": "drop"}, {"content": "ok"}])
    assert invoke(client_for(fake_vllm, llm_max_retries=1))[0] == "ok"
    assert len(fake_vllm.chat_requests()) == 2


def test_retries_run_out_into_a_clear_error(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(default={"status": 500, "error": "always down"})
    with pytest.raises(LLMUnavailableError, match="HTTP 500, still after retries"):
        invoke(client_for(fake_vllm, llm_max_retries=1))
    assert len(fake_vllm.chat_requests()) == 2


def test_400_is_not_retried(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(default={"status": 400, "error": "bad"})
    with pytest.raises(LLMUnavailableError):
        invoke(client_for(fake_vllm, llm_max_retries=3))
    assert len(fake_vllm.chat_requests()) == 1


# -- structured outputs -------------------------------------------------------------------------
def test_structured_outputs_are_sent_top_level(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"content": '{"sql": "SELECT 1"}'}])
    schema = {"type": "object", "properties": {"sql": {"type": "string"}}}
    reply, _ = invoke(client_for(fake_vllm), structured={"json": schema}, max_tokens=50)
    assert json.loads(reply) == {"sql": "SELECT 1"}
    body = fake_vllm.chat_requests()[0]["body"]
    assert body["structured_outputs"] == {"json": schema}
    assert not [k for k in body if k.startswith("guided_")]
    assert body.get("max_completion_tokens", body.get("max_tokens")) == 50


def test_structured_outputs_refused_falls_back_to_free_text(fake_vllm_factory) -> None:
    server = fake_vllm_factory(reject_structured_outputs=True)
    server.script(default={"content": "SELECT 1"})
    client = client_for(server)
    reply, _ = invoke(client, structured={"choice": ["a", "b"]})  # same client, same loop
    assert reply == "SELECT 1" and client.structured is False
    first, second = server.chat_requests()
    assert first["status"] == 400 and "structured_outputs" in first["body"]
    assert "structured_outputs" not in second["body"]
    invoke(client, structured={"choice": ["a", "b"]})  # never asked again
    assert "structured_outputs" not in server.chat_requests()[2]["body"]


# -- streaming and token usage ------------------------------------------------------------------
def test_stream_reports_usage(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"content": "There are 5 regions."}])
    client = client_for(fake_vllm)
    usage = Usage()

    async def run() -> str:
        return "".join([t async for t in client.stream([HumanMessage("hi")], usage,
                                                        step="answer")])

    assert _loop.run_sync(run()) == "There are 5 regions."
    body = fake_vllm.chat_requests()[0]["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert usage.llm_calls == 1 and usage.completion_tokens == 5 and usage.prompt_tokens > 0


def test_slow_reply_times_out_within_the_call_timeout(fake_vllm: FakeVLLM) -> None:
    import time

    fake_vllm.script(replies=[{"content": "late", "delay": 30}])
    client = client_for(fake_vllm, llm_timeout=1)
    start = time.monotonic()
    with pytest.raises(LLMUnavailableError, match="did not answer in time"):
        invoke(client)
    assert time.monotonic() - start < 10  # far below the 30 s the server would take


def test_malformed_sse_is_a_garbled_reply(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"content": "one two three four", "fault": "malformed_sse"}])
    client = client_for(fake_vllm)

    async def run() -> list[str]:
        return [t async for t in client.stream([HumanMessage("hi")], Usage(), step="chat")]

    with pytest.raises(LLMUnavailableError, match="garbled"):
        _loop.run_sync(run())


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (TimeoutError(), "timeout"),
        (json.JSONDecodeError("x", "doc", 0), "garbled"),
        (ConnectionRefusedError(), "connection"),
    ],
)
def test_failure_kinds(exc: BaseException, kind: str) -> None:
    assert failure_kind(exc) == kind
    wrapped = llm_error(exc)
    assert isinstance(wrapped, LLMUnavailableError) and "Traceback" not in str(wrapped)


# -- the transport under ChatOpenAI (tablechat.openai_transport) --------------------------------
MESSAGES = [{"role": "user", "content": "hi"}]
PAYLOAD: dict[str, object] = {"model": "fake-sql-model", "messages": MESSAGES}


def transport_for(server: FakeVLLM, **overrides: object) -> ChatCompletionsTransport:
    options: dict[str, object] = {"timeout": 10, "connect_timeout": 5, "max_retries": 0,
                                  **overrides}
    api_key = options.pop("api_key", server.api_key)
    return ChatCompletionsTransport(server.url, api_key, **options)  # type: ignore[arg-type]


def with_transport(server: FakeVLLM, use: Callable[[ChatCompletionsTransport], Awaitable[T]],
                   **overrides: object) -> T:
    """Run ``use(transport)`` on a fresh event loop; the transport is closed afterwards."""

    async def run() -> T:
        transport = transport_for(server, **overrides)
        try:
            return await use(transport)
        finally:
            await transport.aclose()

    return asyncio.run(run())


async def read_stream(transport: ChatCompletionsTransport, **params: object) -> list[dict]:
    async with await transport.create(**PAYLOAD, stream=True, **params) as stream:
        return [chunk async for chunk in stream]


def wait_until_finished(server: FakeVLLM, deadline_s: float = 15) -> list[dict]:
    deadline = time.monotonic() + deadline_s
    while True:
        log = server.chat_requests()
        if all(r["finished_at"] for r in log) or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def test_build_chat_model_gives_chatopenai_the_transport() -> None:
    settings = load_settings(llm_url="http://127.0.0.1:9/v1", llm_model="m", llm_api_key="k",
                             llm_timeout=7, llm_connect_timeout=2, llm_max_retries=4)
    model = build_chat_model(settings)
    transport = model.async_client  # type: ignore[attr-defined]
    assert isinstance(transport, ChatCompletionsTransport)
    assert str(transport.url) == "http://127.0.0.1:9/v1/chat/completions"
    assert transport.headers["Authorization"] == "Bearer k" and transport.max_retries == 4
    assert transport.timeout.sock_read == 7 and transport.timeout.sock_connect == 2
    assert model.stream_chunk_timeout is None  # type: ignore[attr-defined]
    assert transport.session is None  # opened on the first call's loop


def test_transport_sends_the_payload_with_extra_body_and_headers(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"content": "SELECT 1"}])
    schema = {"choice": ["a", "b"]}
    reply = with_transport(fake_vllm, lambda t: t.create(
        **PAYLOAD, stream=False, temperature=None, max_completion_tokens=20,
        extra_body={"structured_outputs": schema}, extra_headers={"X-Trace": "t1"},
    ), api_key="sesame")
    assert isinstance(reply, dict)
    assert reply["choices"][0]["message"]["content"] == "SELECT 1"
    (request,) = fake_vllm.chat_requests()
    # extra_body lands top level, None values are dropped, SDK options are not sent
    assert request["body"] == {"model": "fake-sql-model", "messages": MESSAGES,
                               "stream": False, "max_completion_tokens": 20,
                               "structured_outputs": schema}
    headers = request["headers"]
    assert headers["authorization"] == "Bearer sesame"
    assert headers["content-type"] == "application/json"
    assert headers["x-trace"] == "t1" and headers["x-stainless-retry-count"] == "0"
    assert headers["user-agent"] == "tablechat"


def test_transport_without_a_key_sends_the_sdk_placeholder(fake_vllm: FakeVLLM) -> None:
    with_transport(fake_vllm, lambda t: t.create(**PAYLOAD), api_key=None)
    assert fake_vllm.chat_requests()[0]["headers"]["authorization"] == "Bearer EMPTY"


def test_transport_stream_yields_chunk_dicts_and_pools_the_connection(
    fake_vllm: FakeVLLM,
) -> None:
    fake_vllm.script(default={"content": "There are 5 regions."})

    async def use(t: ChatCompletionsTransport) -> tuple[list[dict], list[dict], object]:
        first = await read_stream(t, stream_options={"include_usage": True})
        second = await read_stream(t)
        raw = await t.with_raw_response.create(**PAYLOAD)
        return first, second, raw

    first, second, raw = with_transport(fake_vllm, use)
    assert all(isinstance(c, dict) for c in first)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in first if c["choices"])
    assert text == "There are 5 regions."
    assert first[-1]["choices"] == [] and first[-1]["usage"]["completion_tokens"] == 5
    assert "usage" not in second[-1]
    assert raw.parse()["choices"][0]["message"]["content"] == "There are 5 regions."  # type: ignore[attr-defined]
    assert raw.headers["content-type"] == "application/json"  # type: ignore[attr-defined]
    # read to [DONE] and the end of the body, each connection went back to the pool
    assert len({r["client_port"] for r in fake_vllm.chat_requests()}) == 1


def test_transport_sets_tcp_nodelay(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"content": "a b c d e f", "token_delay": 0.05}])

    async def use(t: ChatCompletionsTransport) -> int:
        async with await t.create(**PAYLOAD, stream=True) as stream:
            connection = stream.response.connection
            assert connection is not None and connection.transport is not None
            sock = connection.transport.get_extra_info("socket")
            value = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            async for _ in stream:
                pass
            return int(value)

    assert with_transport(fake_vllm, use) != 0


def test_transport_retries_then_succeeds(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"status": 500, "error": "engine hiccup"}, {"fault": "drop"},
                              {"status": 503}, {"content": "ok"}])
    reply = with_transport(fake_vllm, lambda t: t.create(**PAYLOAD), max_retries=3)
    assert reply["choices"][0]["message"]["content"] == "ok"
    log = fake_vllm.chat_requests()
    assert [r["status"] for r in log] == [500, None, 503, 200]  # None: dropped, no reply
    assert [r["headers"]["x-stainless-retry-count"] for r in log] == ["0", "1", "2", "3"]


def test_transport_retries_a_stream_before_it_is_handed_over(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"status": 502}, {"content": "ok then"}])
    chunks = with_transport(fake_vllm, read_stream, max_retries=1)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                   if c["choices"]) == "ok then"
    assert [r["status"] for r in fake_vllm.chat_requests()] == [502, 200]


def test_transport_never_retries_a_stream_it_handed_over(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"content": "one two three four", "fault": "drop"},
                              {"content": "never asked"}])
    with pytest.raises(openai.APIConnectionError):
        with_transport(fake_vllm, read_stream, max_retries=3)
    assert len(fake_vllm.chat_requests()) == 1


def test_transport_honours_retry_after(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"status": 429, "retry_after": 1.2, "error": "busy"},
                              {"content": "ok"}])
    with_transport(fake_vllm, lambda t: t.create(**PAYLOAD), max_retries=1)
    first, second = fake_vllm.chat_requests()
    assert (first["status"], second["status"]) == (429, 200)
    # the backoff alone would retry within 0.5 s
    assert second["timestamp"] - first["timestamp"] >= 1.1


def test_transport_does_not_wait_out_a_retry_after_over_two_minutes(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(default={"status": 429, "retry_after": 600, "error": "come back later"})
    with pytest.raises(openai.RateLimitError):
        with_transport(fake_vllm, lambda t: t.create(**PAYLOAD), max_retries=3)
    assert len(fake_vllm.chat_requests()) == 1


def test_transport_gives_up_after_max_retries(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(default={"status": 500, "error": "always down"})
    with pytest.raises(openai.InternalServerError, match="always down"):
        with_transport(fake_vllm, lambda t: t.create(**PAYLOAD), max_retries=2)
    assert len(fake_vllm.chat_requests()) == 3


@pytest.mark.parametrize(
    ("status", "error_class", "retried"),
    [
        (400, openai.BadRequestError, False),
        (403, openai.PermissionDeniedError, False),
        (404, openai.NotFoundError, False),
        (409, openai.ConflictError, True),
        (422, openai.UnprocessableEntityError, False),
        (429, openai.RateLimitError, True),
        (418, openai.APIStatusError, False),
        (500, openai.InternalServerError, True),
        (503, openai.InternalServerError, True),
    ],
)
def test_transport_raises_the_sdk_error_class_for_each_status(
    fake_vllm: FakeVLLM, status: int, error_class: type[openai.APIStatusError], retried: bool
) -> None:
    fake_vllm.script(default={"status": status, "error": f"scripted {status}"})
    with pytest.raises(error_class) as caught:
        with_transport(fake_vllm, lambda t: t.create(**PAYLOAD), max_retries=1)
    error = caught.value
    assert type(error) is error_class  # the exact class, as the SDK picks it
    assert str(error) == f"Error code: {status} - scripted {status}"
    assert error.status_code == status and error.response.status_code == status
    assert isinstance(error.body, dict) and error.body["message"] == f"scripted {status}"
    assert str(error.request.url) == fake_vllm.url + "/chat/completions"
    assert len(fake_vllm.chat_requests()) == (2 if retried else 1)


def test_transport_wrong_key_is_an_authentication_error(fake_vllm_factory) -> None:
    server = fake_vllm_factory(api_key="sesame")
    with pytest.raises(openai.AuthenticationError) as caught:
        with_transport(server, lambda t: t.create(**PAYLOAD), api_key="wrong")
    assert caught.value.status_code == 401 and failure_kind(caught.value) == "auth"


def test_transport_unknown_model_is_not_found(fake_vllm: FakeVLLM) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        with_transport(fake_vllm, lambda t: t.create(model="nope", messages=MESSAGES))
    assert failure_kind(caught.value) == "model"


def test_transport_dead_server_is_a_connection_error() -> None:
    transport = ChatCompletionsTransport(closed_port_url(), None, timeout=5, connect_timeout=2,
                                         max_retries=0)

    async def run() -> None:
        try:
            await transport.create(**PAYLOAD)
        finally:
            await transport.aclose()

    with pytest.raises(openai.APIConnectionError) as caught:
        asyncio.run(run())
    assert failure_kind(caught.value) == "connection"
    assert isinstance(caught.value.__cause__, OSError)  # aiohttp's ClientConnectorError
    assert "unreachable" in str(llm_error(caught.value))


@pytest.mark.parametrize("stream", [False, True])
def test_transport_read_timeout_is_a_timeout_error(fake_vllm: FakeVLLM, stream: bool) -> None:
    fake_vllm.script(replies=[{"content": "a b c d", "fault": "stall" if stream else "hang"}])

    async def use(t: ChatCompletionsTransport) -> object:
        return await (read_stream(t) if stream else t.create(**PAYLOAD))

    with pytest.raises(openai.APITimeoutError) as caught:
        with_transport(fake_vllm, use, timeout=0.5)
    assert failure_kind(caught.value) == "timeout"


def test_transport_per_call_timeout_option(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"fault": "hang"}])
    with pytest.raises(openai.APITimeoutError):  # the transport's own read timeout is 60 s
        with_transport(fake_vllm, lambda t: t.create(**PAYLOAD, timeout=0.5), timeout=60)

def test_transport_drop_mid_stream_is_a_connection_error(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"content": "one two three four", "fault": "drop"}])
    seen: list[str] = []

    async def use(t: ChatCompletionsTransport) -> None:
        async with await t.create(**PAYLOAD, stream=True) as stream:
            async for chunk in stream:
                seen.append(chunk["choices"][0]["delta"].get("content") or "")

    with pytest.raises(openai.APIConnectionError):
        with_transport(fake_vllm, use)
    assert "".join(seen) == "one two"


@pytest.mark.parametrize("stream", [False, True])
def test_transport_malformed_reply_is_garbled(fake_vllm: FakeVLLM, stream: bool) -> None:
    fake_vllm.script(replies=[{"content": "one two three four", "fault": "malformed_sse"}])

    async def use(t: ChatCompletionsTransport) -> object:
        return await (read_stream(t) if stream else t.create(**PAYLOAD))

    with pytest.raises(json.JSONDecodeError) as caught:
        with_transport(fake_vllm, use, max_retries=2)
    assert failure_kind(caught.value) == "garbled"
    assert len(fake_vllm.chat_requests()) == 1  # a garbled reply is not retried


def test_transport_error_event_raises_an_api_error(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(replies=[{"content": "one two three four", "fault": "error_event"}])
    with pytest.raises(openai.APIError, match="the engine died") as caught:
        with_transport(fake_vllm, read_stream)
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == 500


def test_transport_stream_left_early_closes_its_connection(fake_vllm: FakeVLLM) -> None:
    words = " ".join(f"w{i}" for i in range(40))
    fake_vllm.script(replies=[{"content": words, "token_delay": 0.05}])

    async def use(t: ChatCompletionsTransport) -> bool:
        async with await t.create(**PAYLOAD, stream=True) as stream:
            async for chunk in stream:
                if chunk["choices"][0]["delta"].get("content"):
                    break
            assert not stream.response.closed
        return stream.response.closed

    assert with_transport(fake_vllm, use) is True
    (request,) = wait_until_finished(fake_vllm)
    assert request["client_disconnected"] is True  # the server saw the client leave


def test_transport_pool_holds_64_concurrent_requests(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(default={"fault": "hang"})
    many = 70

    async def use(t: ChatCompletionsTransport) -> int:
        calls = asyncio.gather(*(t.create(**PAYLOAD) for _ in range(many)),
                               return_exceptions=True)
        deadline = time.monotonic() + 30
        arrived = 0
        while arrived < many and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            arrived = len(await asyncio.to_thread(fake_vllm.chat_requests))
        await asyncio.to_thread(fake_vllm.reset)  # releases the hanging requests
        await calls
        return arrived

    # all in flight at once: none waited for a free connection in the pool
    assert with_transport(fake_vllm, use) == many


class _ScriptedBody:
    """Stands in for an aiohttp response: ``content.readany()`` returns the given pieces."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.content = self
        self._pieces = list(pieces)
        self.closed = self.released = False

    async def readany(self) -> bytes:
        return self._pieces.pop(0) if self._pieces else b""

    def is_eof(self) -> bool:
        return not self._pieces

    def close(self) -> None:
        self.closed = True

    def release(self) -> None:
        self.released = True


def read_sse(pieces: list[bytes]) -> tuple[list[object], _ScriptedBody]:
    body = _ScriptedBody(pieces)

    async def run() -> list[object]:
        async with SSEStream(body, "http://127.0.0.1:9/v1/chat/completions") as stream:  # type: ignore[arg-type]
            return [chunk async for chunk in stream]

    return asyncio.run(run()), body


def test_sse_parsing_follows_the_event_stream_format() -> None:
    pieces = [
        b": a comment\r\n",
        b'data: {"a":\r\ndata: 1}\r\n\r\nda',  # CRLF, one event over two data lines
        b'ta:{"b": 2}\n\nid: 7\nretry: 10\n',  # split mid-line; no space after the colon
        b'data: {"c": 3}\n\n',
        b"data: [DONE]\n\n",
        b'data: {"after": "done"}\n\n',  # nothing after [DONE] counts
    ]
    chunks, body = read_sse(pieces)
    assert chunks == [{"a": 1}, {"b": 2}, {"c": 3}]
    assert body.released and not body.closed  # read to the end: the connection is pooled


def test_sse_error_event_and_malformed_data_close_the_response() -> None:
    with pytest.raises(openai.APIError, match="overloaded"):
        read_sse([b'event: error\ndata: {"message": "overloaded"}\n\n'])
    with pytest.raises(openai.APIError, match="old style"):
        read_sse([b'data: {"object": "error", "message": "old style", "code": 400}\n\n'])
    body = _ScriptedBody([b'data: {"ok": 1}\n\ndata: {"broken"\n\n'])

    async def run() -> list[object]:
        seen: list[object] = []
        async with SSEStream(body, "http://127.0.0.1:9/v1") as stream:  # type: ignore[arg-type]
            async for chunk in stream:
                seen.append(chunk)
        return seen

    with pytest.raises(json.JSONDecodeError):
        asyncio.run(run())
    assert body.closed


def test_sse_stream_ending_without_done_just_ends() -> None:
    chunks, body = read_sse([b'data: {"a": 1}\n\ndata: {"partial": '])
    assert chunks == [{"a": 1}] and body.released


def test_retry_policy() -> None:
    for retry, (low, high) in enumerate([(0.375, 0.5), (0.75, 1), (1.5, 2), (3, 4), (6, 8)]):
        assert low <= backoff(retry) <= high
    assert 6 <= backoff(40) <= 8
    assert retry_delay(0, 429, {"retry-after": "3"}) == 3
    assert retry_delay(0, 429, {"retry-after-ms": "1500"}) == 1.5
    assert retry_delay(0, 503, {"retry-after": "121"}) is None
    assert retry_delay(0, 400, {}) is None
    assert retry_delay(0, 400, {"x-should-retry": "true"}) is not None
    assert retry_delay(0, 503, {"x-should-retry": "false"}) is None
    for status in (408, 409, 429, 500, 502, 504):
        delay = retry_delay(1, status, {})
        assert delay is not None and 0.75 <= delay <= 1


# -- through ChatOpenAI: its error handling and tablechat's messages stay the same --------------
@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ({"status": 404, "error": "The model `x` does not exist."}, "does not serve that model"),
        ({"status": 429, "error": "queue full"}, "busy (HTTP 429"),
        ({"status": 503, "error": "engine asleep"}, "HTTP 503, still after retries"),
        ({"status": 400, "error": "This model's maximum context length is 8192 tokens."},
         "context window"),
        ({"content": "a b c d e f", "fault": "error_event"}, "the engine died"),
        ({"content": "a b c d e f", "fault": "drop"}, "unreachable"),
    ],
)
def test_chatopenai_errors_become_clear_messages(
    fake_vllm: FakeVLLM, reply: dict[str, object], message: str
) -> None:
    fake_vllm.script(default=reply)
    client = client_for(fake_vllm)

    async def stream() -> list[str]:
        return [t async for t in client.stream([HumanMessage("hi")], Usage(), step="chat")]

    with pytest.raises(LLMUnavailableError, match=re.escape(message)):
        _loop.run_sync(stream())
    if "fault" not in reply:
        with pytest.raises(LLMUnavailableError, match=re.escape(message)):
            invoke(client)


def test_wrong_key_through_chatopenai(fake_vllm_factory) -> None:
    server = fake_vllm_factory(api_key="sesame")
    with pytest.raises(LLMUnavailableError, match="refused the API key"):
        invoke(client_for(server, llm_api_key="wrong"))
    assert invoke(client_for(server, llm_api_key="sesame"))[0] == "SELECT 1"


def test_aclose_closes_the_session(fake_vllm: FakeVLLM) -> None:
    client = client_for(fake_vllm)
    invoke(client)
    transport = client.model.async_client  # type: ignore[attr-defined]
    session = transport.session
    assert session is not None and not session.closed
    _loop.run_sync(client.aclose())
    assert session.closed and transport.session is None


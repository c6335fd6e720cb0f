"""The LLM client (tablechat.llm, tablechat.backends): settings → ChatOpenAI on the openai SDK,
probing, each backend's dialect, retries, typed error classification and messages.

The HTTP path runs against the fake vLLM server (tests/support/fake_vllm.py).
"""

from __future__ import annotations

import json
import re
import socket
import time
from typing import TypeVar

import openai
import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI

from tablechat import _loop
from tablechat.agent.client import LLMClient
from tablechat.answer import Usage
from tablechat.backends import LlamaCppBackend, LLMBackend, VLLMBackend
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
    backend = VLLMBackend(settings)
    client = LLMClient(backend.build_model(server.model), structured=True,
                       timeout=settings.llm_timeout, backend=backend,
                       retries=settings.llm_max_retries)
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
    assert model.streaming is True  # every call streams: a timeout frees the server's slot
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


# -- through ChatOpenAI: its error handling and tablechat's messages stay the same --------------
@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ({"status": 404, "error": "The model `x` does not exist."}, "does not serve that model"),
        ({"status": 429, "error": "queue full"}, "busy (HTTP 429"),
        ({"status": 503, "error": "engine asleep"}, "HTTP 503, still after retries"),
        ({"status": 400, "error": "This model's maximum context length is 8192 tokens.",
          "param": "input_tokens"}, "context window"),
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


def test_aclose_closes_the_sdk_client(fake_vllm: FakeVLLM) -> None:
    client = client_for(fake_vllm)
    invoke(client)
    sdk = client.model.root_async_client  # type: ignore[attr-defined]
    assert not sdk.is_closed()
    _loop.run_sync(client.aclose())
    assert sdk.is_closed()


# -- each backend's dialect ---------------------------------------------------------------------
def test_a_generic_server_gets_both_reply_limits_and_no_constraint(fake_vllm: FakeVLLM) -> None:
    settings = load_settings(llm_url=fake_vllm.url, llm_model=fake_vllm.model, llm_max_retries=0)
    backend = LLMBackend(settings)
    client = LLMClient(backend.build_model(fake_vllm.model), structured=True, backend=backend)
    _CLIENTS.append(client)
    fake_vllm.script(default={"content": "SELECT 1"})
    invoke(client, structured={"choice": ["a", "b"]}, max_tokens=7)
    body = fake_vllm.chat_requests()[0]["body"]
    # a server reading only max_tokens (llama-cpp-python) still stops
    assert body["max_tokens"] == 7 and body["max_completion_tokens"] == 7
    assert "structured_outputs" not in body and "grammar" not in body


def test_llamacpp_dialect_grammar_and_json_schema() -> None:
    backend = LlamaCppBackend(load_settings(llm_url="http://127.0.0.1:9/v1"))
    choice = backend.request_options({"choice": ["data", "chat"]}, 8)
    assert choice["extra_body"] == {"max_tokens": 8, "grammar": 'root ::= "data" | "chat"'}
    schema = {"type": "object"}
    body = backend.request_options({"json": schema}, None)["extra_body"]
    assert body["response_format"]["json_schema"]["schema"] == schema
    grammar = backend.request_options({"grammar": "root ::= \"x\""}, None)["extra_body"]
    assert grammar["grammar"] == 'root ::= "x"'


def test_vllm_dialect_sends_structured_outputs_and_max_completion_tokens() -> None:
    backend = VLLMBackend(load_settings(llm_url="http://127.0.0.1:9/v1"))
    options = backend.request_options({"grammar": 'root ::= "x"'}, 5)
    assert options == {"max_tokens": 5,  # ChatOpenAI sends it as max_completion_tokens
                       "extra_body": {"structured_outputs": {"grammar": 'root ::= "x"'}}}
    assert not backend.sql_grammar and LlamaCppBackend.sql_grammar


def test_probe_picks_the_backend_from_owned_by(fake_vllm: FakeVLLM) -> None:
    from tablechat.backends import probe_backend

    backend, info = probe_backend(load_settings(llm_url=fake_vllm.url))
    assert isinstance(backend, VLLMBackend) and info.kind == "vllm"
    assert backend.context_length(info) == 8192


def test_a_slow_model_list_is_busy_not_down() -> None:
    """A server that accepts the connection but does not answer in time is busy."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)  # accepts, never answers: a server stuck in one generation
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    try:
        info = probe_server(url, timeout=0.5)
        assert info.reachable and info.busy and "busy" in info.error
    finally:
        threading.Thread(target=listener.close).start()
    dead = probe_server(closed_port_url(), timeout=0.5)
    assert not dead.reachable and not dead.busy


def test_a_missing_gguf_file_is_said_not_raised(demo_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import tablechat

    with tablechat.connect(demo_db, llm=f"gguf:{tmp_path / 'absent.gguf'}") as tc:
        llm = tc.health()["llm"]
        assert not llm["reachable"] and "no GGUF model file" in llm["error"]
        answer = tc.ask("How many customers are there?")
        # why is the admin's (health, above); the person is told the model is unreachable
        assert answer.engine == "offline" and "unreachable" in answer.text
        assert "absent.gguf" not in answer.text

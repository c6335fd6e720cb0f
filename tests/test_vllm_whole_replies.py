"""On vLLM a reply used whole (the SQL, the router, an answer shown whole) comes as one
non-streamed response, and token streams still stream (issue 15: the stream of a whole reply
cost the client ~8 ms of CPU a question). A call given up at its timeout still closes its
connection, which vLLM takes as an abort (``with_cancellation``), so the slot is freed as with
a stream (issue 13). Against the fake vLLM server (tests/support/fake_vllm.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from tablechat import _loop
from tablechat.agent.client import LLMClient
from tablechat.answer import Usage
from tablechat.backends import LlamaCppBackend, LLMBackend, VLLMBackend
from tablechat.config import load_settings
from tablechat.errors import LLMUnavailableError
from tests.support.fake_vllm_client import FakeVLLM


def _client(server: FakeVLLM, backend_class: type[LLMBackend] = VLLMBackend,
            timeout: float = 10.0) -> LLMClient:
    settings = load_settings(llm_url=server.url, llm_model=server.model, llm_max_retries=0,
                             llm_timeout=timeout)
    backend = backend_class(settings)
    return LLMClient(backend.build_model(server.model), timeout=timeout, backend=backend)


def _finished(server: FakeVLLM, deadline_s: float = 30.0) -> list[dict[str, Any]]:
    """The chat requests, once every one of them has ended on the server's side."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        requests = server.chat_requests()
        if requests and all(r["finished_at"] for r in requests):
            return requests
        time.sleep(0.02)
    raise AssertionError("the fake server did not finish its requests")


def test_vllm_whole_reply_is_one_response_and_tokens_still_stream(fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(default={"content": "There are 5000 customers."})
    client = _client(fake_vllm)
    usage = Usage()
    try:
        whole = _loop.run_sync(client.invoke([HumanMessage("hi")], usage, step="sql"))

        async def pieces() -> list[str]:
            return [t async for t in client.stream([HumanMessage("hi")], usage, step="answer")]

        streamed = _loop.run_sync(pieces())
    finally:
        _loop.run_sync(client.aclose())
    assert whole == "There are 5000 customers." == "".join(streamed)
    assert len(streamed) > 1  # as the tokens came
    first, second = _finished(fake_vllm)
    assert first["body"]["stream"] is False
    assert second["body"]["stream"] is True
    assert usage.llm_calls == 2 and usage.prompt_tokens > 0 and usage.completion_tokens > 0


@pytest.mark.parametrize("backend_class", [LlamaCppBackend, LLMBackend])
def test_other_servers_stream_whole_replies(fake_vllm: FakeVLLM,
                                            backend_class: type[LLMBackend]) -> None:
    """llama-cpp-python ran a non-streamed request on for 418 s after its client left (issue
    13): servers not known to abort one keep getting streams."""
    fake_vllm.script(default={"content": "SELECT 1"})
    client = _client(fake_vllm, backend_class)
    try:
        assert _loop.run_sync(client.invoke([HumanMessage("hi")], Usage(), step="sql")) \
            == "SELECT 1"
    finally:
        _loop.run_sync(client.aclose())
    (request,) = _finished(fake_vllm)
    assert request["body"]["stream"] is True


def test_vllm_whole_reply_given_up_at_its_timeout_leaves_the_server(fake_vllm: FakeVLLM
                                                                     ) -> None:
    # far longer than the call may take (8 tokens 5 s apart): the timeout always comes first
    fake_vllm.script(default={"content": "a b c d e f g h", "token_delay": 5.0})
    client = _client(fake_vllm, timeout=0.5)
    try:
        with pytest.raises(LLMUnavailableError):
            _loop.run_sync(client.invoke([HumanMessage("hi")], Usage(), step="sql"))
    finally:
        _loop.run_sync(client.aclose())
    (request,) = _finished(fake_vllm)
    assert request["body"]["stream"] is False
    # the connection closed mid-generation: vLLM aborts the request there, freeing the slot
    assert request["client_disconnected"] is True

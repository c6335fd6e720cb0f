"""End to end against the fake vLLM server: ``tablechat.connect(..., llm=url)`` and
``tablechat ask --llm-url``. Correct answers, constrained decoding, fallbacks, faults."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import tablechat
from tablechat import events as ev
from tablechat.agent.context import QuestionContext
from tablechat.answer import Usage
from tests.support.fake_vllm import reply_pieces
from tests.support.fake_vllm_client import FakeVLLM

ROUTER = "Reply with one word: data or chat"
SQL = "## Database schema"
ANSWER = "SQL that was run"
REWRITE = "Rewrite the latest message"
CHAT = "You are tablechat"
COUNT_SQL = "SELECT count(*) AS n FROM customers"


def script(
    server: FakeVLLM,
    *,
    sql: str | list[dict[str, Any]] = COUNT_SQL,
    answer: dict[str, Any] | None = None,
    route: str = "data",
    rewrite: str = "",
    chat: str = "Hello! Ask me about the data.",
    as_json: bool = True,
) -> None:
    """Reply by prompt kind: router, rewrite, SQL (JSON when constrained), answer, chat."""
    if isinstance(sql, str):
        sql_replies = [{"content": json.dumps({"sql": sql}) if as_json else sql}]
    else:
        sql_replies = sql
    server.script(rules=[
        {"match": ROUTER, "on": "prompt", "reply": {"content": route}},
        {"match": REWRITE, "on": "prompt", "reply": {"content": rewrite or "?"}},
        {"match": SQL, "on": "prompt", "replies": sql_replies},
        {"match": ANSWER, "on": "prompt",
         "reply": answer or {"content": "There are 5000 customers."}},
        {"match": CHAT, "on": "prompt", "reply": {"content": chat}},
    ])


def by_kind(server: FakeVLLM, marker: str) -> list[dict[str, Any]]:
    return [r for r in server.chat_requests()
            if any(marker in str(m.get("content")) for m in r["body"]["messages"])]


def served(server: FakeVLLM) -> tuple[int, int]:
    """(prompt, completion) tokens the server billed for every chat request so far."""
    prompt = completion = 0
    with httpx.Client(trust_env=False, timeout=10) as http:
        for r in server.chat_requests():
            counted = http.post(f"{server.base}/tokenize",
                                json={"model": server.model, "messages": r["body"]["messages"]})
            prompt += counted.json()["count"]
            completion += len(reply_pieces(r["reply"]["content"]))
    return prompt, completion


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


class StubOffline:
    """Stands in for the offline engine (tablechat.offline), deterministic."""

    name = "offline"

    async def run(self, ctx: QuestionContext, usage: Usage):  # type: ignore[no-untyped-def]
        yield ev.AnswerText(text="offline says 5000", engine="offline")


_OPEN: list[tablechat.TableChat] = []


@pytest.fixture(autouse=True)
def _close_connections():
    yield
    while _OPEN:
        _OPEN.pop().close()


def connect(demo_db: Path, url: str, offline: Any = None, **settings: Any) -> tablechat.TableChat:
    settings.setdefault("llm_max_retries", 0)
    tc = tablechat.connect(demo_db, llm=url, **settings)
    tc._offline = offline
    _OPEN.append(tc)
    return tc


# -- the happy path -----------------------------------------------------------------------------
def test_answer_with_constrained_sql(demo_db: Path, fake_vllm: FakeVLLM) -> None:
    script(fake_vllm)
    tc = connect(demo_db, fake_vllm.url)
    answer = tc.ask("How many customers are there?")
    assert answer.error is None, answer.error
    assert answer.rows == [(5000,)] and answer.engine == "llm"
    assert answer.text == "There are 5000 customers."
    assert answer.sql is not None and answer.sql.startswith("SELECT COUNT(*) AS n FROM customers")
    (sql_request,) = by_kind(fake_vllm, SQL)
    body = sql_request["body"]
    assert body["structured_outputs"]["json"]["required"] == ["sql"]
    assert not [k for k in body if k.startswith("guided_")]
    # a reply used whole comes whole: vLLM aborts a non-streamed request whose client
    # leaves, so a timeout still frees its slot (the stream cost the client CPU per token);
    # the SQL reply is limited to a query (llm_sql_max_tokens), not the 512 of any reply
    assert body["stream"] is False and body["max_completion_tokens"] == 128
    prompt = body["messages"][0]["content"]
    # static parts first (prefix caching), the question last
    assert prompt.index("## Database schema") < prompt.index("## Rules") \
        < prompt.index("How many customers are there?")
    assert '{"sql":' in prompt  # the reply format matches the constraint
    (answer_request,) = by_kind(fake_vllm, ANSWER)
    assert answer_request["body"]["stream"] is False  # ask() shows it whole
    assert "structured_outputs" not in answer_request["body"]
    # sql + answer; a question naming the schema needs no router call
    assert answer.usage.llm_calls == 2
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == served(fake_vllm)
    statuses = [e.message for e in answer.events if isinstance(e, ev.Status)]
    assert "engine: llm (model fake-sql-model)" in statuses


def _streamed(tc: tablechat.TableChat, question: str, **kwargs: Any) -> list[ev.Event]:
    import asyncio

    async def collect() -> list[ev.Event]:
        return [e async for e in tc.stream(question, **kwargs)]

    return asyncio.run(collect())


def test_stream_streams_the_answer_sentence_with_usage(demo_db: Path, fake_vllm: FakeVLLM) -> None:
    script(fake_vllm)
    tc = connect(demo_db, fake_vllm.url)
    usage = Usage()
    events = _streamed(tc, "How many customers are there?", usage=usage)
    tokens = [e.text for e in events if isinstance(e, ev.Token)]
    assert "".join(tokens) == "There are 5000 customers." and len(tokens) > 1
    (answer_request,) = by_kind(fake_vllm, ANSWER)
    assert answer_request["body"]["stream"] is True
    assert answer_request["body"]["stream_options"] == {"include_usage": True}
    assert (usage.prompt_tokens, usage.completion_tokens) == served(fake_vllm)
    fake_vllm.reset()
    script(fake_vllm)
    events = _streamed(tc, "How many customers are there?", tokens=False)
    assert not [e for e in events if isinstance(e, ev.Token)]
    (answer_request,) = by_kind(fake_vllm, ANSWER)
    assert answer_request["body"]["stream"] is False


def test_usage_counts_every_call(demo_db: Path, fake_vllm: FakeVLLM) -> None:
    script(fake_vllm, route="data", rewrite="How many customers are in Asia?")
    tc = connect(demo_db, fake_vllm.url)
    history = [{"role": "user", "content": "How many customers are in Europe?"},
               {"role": "assistant", "content": "1000.", "sql": "SELECT count(*) FROM customers"}]
    answer = tc.ask("and in Asia?", history=history)
    assert answer.error is None, answer.error
    # router, rewrite, sql, answer
    assert answer.usage.llm_calls == 4 == len(fake_vllm.chat_requests())
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == served(fake_vllm)


def test_chat_message_is_routed_with_a_constrained_choice(
    demo_db: Path, fake_vllm: FakeVLLM
) -> None:
    script(fake_vllm, route="chat", chat="Hi! I answer questions about the demo shop.")
    tc = connect(demo_db, fake_vllm.url)
    answer = tc.ask("hello there, who are you?")
    assert answer.error is None and answer.engine == "llm" and answer.sql is None
    assert answer.text == "Hi! I answer questions about the demo shop."
    (router,) = by_kind(fake_vllm, ROUTER)
    assert router["body"]["structured_outputs"] == {"choice": ["data", "chat"]}
    assert router["body"].get("max_completion_tokens", router["body"].get("max_tokens")) <= 8
    (chat,) = by_kind(fake_vllm, CHAT)
    # ask() shows it whole: one reply, not a stream (vLLM aborts it if the client leaves)
    assert chat["body"]["stream"] is False and chat["body"]["messages"][0]["role"] == "system"
    assert not by_kind(fake_vllm, SQL)
    assert answer.usage.llm_calls == 2
    fake_vllm.reset()
    script(fake_vllm, route="chat", chat="Hi! I answer questions about the demo shop.")
    events = _streamed(tc, "hello there, who are you?")
    tokens = "".join(e.text for e in events if isinstance(e, ev.Token))
    assert tokens == "Hi! I answer questions about the demo shop."
    (chat,) = by_kind(fake_vllm, CHAT)
    assert chat["body"]["stream"] is True


def test_follow_up_is_rewritten_with_history_and_last_sql(
    demo_db: Path, fake_vllm: FakeVLLM
) -> None:
    script(fake_vllm, rewrite="How many customers are in the Corporate segment?",
           sql="SELECT count(*) AS n FROM customers WHERE segment = 'Corporate'")
    tc = connect(demo_db, fake_vllm.url)
    history = [{"role": "user", "content": "How many customers are there?"},
               {"role": "assistant", "content": "There are 5000 customers.",
                "sql": "SELECT count(*) AS n FROM customers"}]
    answer = tc.ask("only corporate ones", history=history)
    assert answer.error is None, answer.error
    (rewrite,) = by_kind(fake_vllm, REWRITE)
    text = rewrite["body"]["messages"][0]["content"]
    assert "How many customers are there?" in text
    assert "SELECT count(*) AS n FROM customers" in text and "only corporate ones" in text
    (sql,) = by_kind(fake_vllm, SQL)
    assert sql["body"]["messages"][0]["content"].rstrip().endswith(
        "How many customers are in the Corporate segment?")
    assert any(isinstance(e, ev.Status) and e.step == "rewrite" for e in answer.events)
    assert answer.rows[0][0] < 5000


def test_why_question_routes_to_chat_with_history(demo_db: Path, fake_vllm: FakeVLLM) -> None:
    script(fake_vllm, route="chat", chat="Because most customers are consumers.")
    tc = connect(demo_db, fake_vllm.url)
    history = [{"role": "user", "content": "customers per segment"},
               {"role": "assistant", "content": "Consumer 2500, Corporate 1500."}]
    answer = tc.ask("why is that?", history=history)
    assert answer.text == "Because most customers are consumers."
    (chat,) = by_kind(fake_vllm, CHAT)
    roles = [m["role"] for m in chat["body"]["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert chat["body"]["messages"][2]["content"].startswith("Consumer 2500")
    assert not by_kind(fake_vllm, REWRITE) and not by_kind(fake_vllm, SQL)


def test_server_refusing_structured_outputs_gets_free_text(
    demo_db: Path, fake_vllm_factory
) -> None:
    server = fake_vllm_factory(reject_structured_outputs=True)
    script(server, sql=f"```sql\n{COUNT_SQL}\n```", as_json=False)
    tc = connect(demo_db, server.url)
    answer = tc.ask("How many customers are there?")
    assert answer.error is None and answer.rows == [(5000,)]
    first, second = by_kind(server, SQL)
    assert first["status"] == 400 and "structured_outputs" in first["body"]
    assert "structured_outputs" not in second["body"]
    assert "Reply with the SQL only" in second["body"]["messages"][0]["content"]
    assert tc.health()["llm"]["structured_outputs"] is False


def test_health_reports_the_server(demo_db: Path, fake_vllm: FakeVLLM) -> None:
    health = connect(demo_db, fake_vllm.url).health()
    assert health["engine"] == "llm"
    llm = health["llm"]
    assert llm["reachable"] and llm["model"] == "fake-sql-model" and llm["vllm"]
    assert llm["max_model_len"] == 8192 and llm["structured_outputs"] is True
    assert llm["message"] == "engine: llm (model fake-sql-model)"


def test_tablechat_models_use_the_openai_sdk_and_own_models_keep_theirs(
    demo_db: Path, fake_vllm: FakeVLLM
) -> None:
    import openai
    from langchain_openai import ChatOpenAI

    script(fake_vllm, sql=COUNT_SQL, as_json=False)
    tc = connect(demo_db, fake_vllm.url)
    assert tc.ask("How many customers are there?").rows == [(5000,)]
    assert tc._agent is not None
    assert isinstance(tc._agent.client.model.root_async_client, openai.AsyncOpenAI)
    built = {r["headers"]["user-agent"].split("/")[0] for r in fake_vllm.chat_requests()}
    assert built == {"AsyncOpenAI"}  # the SDK's own client, no transport of ours
    fake_vllm.reset()
    script(fake_vllm, sql=COUNT_SQL, as_json=False)
    own = ChatOpenAI(**fake_vllm.chat_openai_kwargs())
    sdk = own.async_client
    tc = tablechat.connect(demo_db, llm=own)
    _OPEN.append(tc)
    answer = tc.ask("How many customers are there?")
    assert answer.error is None and answer.rows == [(5000,)]
    assert own.async_client is sdk  # a model the user passes is used as it is
    agents = {r["headers"]["user-agent"].split("/")[0] for r in fake_vllm.chat_requests()}
    assert agents == {"AsyncOpenAI"}


# -- faults -------------------------------------------------------------------------------------
def test_dead_server_falls_back_offline_and_says_so(demo_db: Path) -> None:
    url = closed_port_url()
    tc = connect(demo_db, url, offline=StubOffline())
    health = tc.health()
    assert health["engine"] == "offline" and not health["llm"]["reachable"]
    assert "refused" in health["llm"]["error"]
    assert health["llm"]["message"].startswith("LLM server unreachable")
    answer = tc.ask("How many customers are there?")
    assert answer.error is None and answer.engine == "offline"
    assert answer.text.startswith("offline says 5000")
    assert "Answered by the offline engine" in answer.text
    fallback = [e for e in answer.events if isinstance(e, ev.Status) and e.step == "fallback"]
    assert fallback and fallback[0].message.startswith("LLM server unreachable, answered offline")


def test_dead_server_without_offline_engine_is_a_clear_error(demo_db: Path) -> None:
    answer = connect(demo_db, closed_port_url(), offline=None).ask("How many customers?")
    assert answer.error_type == "LLMUnavailableError"
    assert "unreachable" in (answer.error or "") and "Traceback" not in (answer.error or "")


def test_slow_server_times_out_with_a_clear_message(demo_db: Path, fake_vllm: FakeVLLM) -> None:
    script(fake_vllm, sql=[{"content": json.dumps({"sql": COUNT_SQL}), "delay": 30}])
    tc = connect(demo_db, fake_vllm.url, llm_timeout=1)
    start = time.monotonic()
    answer = tc.ask("How many customers are there?")
    assert time.monotonic() - start < 10  # the server would take 30 s
    assert answer.error_type == "LLMUnavailableError"
    assert "did not answer in time (1 s" in (answer.error or "")


def test_slow_server_falls_back_offline(demo_db: Path, fake_vllm: FakeVLLM) -> None:
    script(fake_vllm, sql=[{"content": "{}", "fault": "hang"}])
    tc = connect(demo_db, fake_vllm.url, offline=StubOffline(), llm_timeout=1)
    answer = tc.ask("How many customers are there?")
    assert answer.engine == "offline" and "did not answer in time" in answer.text
    # a timeout is not a dead server: the next question tries the LLM again
    script(fake_vllm)
    assert tc.ask("How many customers are there?").engine == "llm"


def test_malformed_sse_in_the_answer_keeps_the_data(demo_db: Path, fake_vllm: FakeVLLM) -> None:
    script(fake_vllm, answer={"content": "There are 5000 customers in all.",
                              "fault": "malformed_sse"})
    answer = connect(demo_db, fake_vllm.url).ask("How many customers are there?")
    assert answer.error is None and answer.rows == [(5000,)]
    assert "garbled" in answer.text


def test_garbled_sql_reply_is_a_clear_error(demo_db: Path, fake_vllm: FakeVLLM) -> None:
    script(fake_vllm, sql=[{"content": json.dumps({"sql": COUNT_SQL}),
                            "fault": "malformed_sse"}])
    answer = connect(demo_db, fake_vllm.url).ask("How many customers are there?")
    assert answer.error_type == "LLMUnavailableError" and "garbled" in (answer.error or "")


def test_malformed_chat_stream_is_a_clear_error(demo_db: Path, fake_vllm: FakeVLLM) -> None:
    fake_vllm.script(rules=[
        {"match": ROUTER, "on": "prompt", "reply": {"content": "chat"}},
        {"match": CHAT, "on": "prompt",
         "reply": {"content": "one two three four five six", "fault": "malformed_sse"}},
    ])
    tc = connect(demo_db, fake_vllm.url, offline=StubOffline())
    events = _streamed(tc, "hi, who are you?")
    # tokens had reached the person: no offline answer on top, a clear error instead
    assert any(isinstance(e, ev.Token) for e in events)
    (error,) = [e for e in events if isinstance(e, ev.Error)]
    assert error.error_type == "LLMUnavailableError" and "garbled" in error.message
    assert not [e for e in events if isinstance(e, ev.AnswerText)]
    # ask() shows nothing before the reply is whole: the garbled reply leaves room to fall back
    answer = tc.ask("hi, who are you?")
    assert answer.error is None and "offline" in answer.text


def test_500_then_success_is_retried(demo_db: Path, fake_vllm: FakeVLLM) -> None:
    script(fake_vllm, sql=[{"status": 500, "error": "CUDA hiccup"},
                           {"content": json.dumps({"sql": COUNT_SQL})}])
    answer = connect(demo_db, fake_vllm.url, llm_max_retries=2).ask("How many customers?")
    assert answer.error is None and answer.rows == [(5000,)]
    assert [r["status"] for r in by_kind(fake_vllm, SQL)] == [500, 200]


def test_429_with_retry_after_is_retried(demo_db: Path, fake_vllm: FakeVLLM) -> None:
    script(fake_vllm, sql=[{"status": 429, "retry_after": 1, "error": "queue full"},
                           {"content": json.dumps({"sql": COUNT_SQL})}])
    answer = connect(demo_db, fake_vllm.url, llm_max_retries=1).ask("How many customers?")
    assert answer.error is None and answer.rows == [(5000,)]
    first, second = by_kind(fake_vllm, SQL)
    assert first["status"] == 429 and second["timestamp"] - first["timestamp"] >= 0.9


def test_server_dying_mid_session_switches_to_offline(demo_db: Path, fake_vllm_factory) -> None:
    server = fake_vllm_factory()
    script(server)
    tc = connect(demo_db, server.url, offline=StubOffline())
    assert tc.ask("How many customers are there?").engine == "llm"
    server.stop()
    answer = tc.ask("How many customers are there?")
    assert answer.engine == "offline" and "unreachable" in answer.text
    # known dead now: the next question goes offline without trying the server again
    again = tc.ask("How many customers are there?")
    assert again.engine == "offline"
    assert [e.step for e in again.events if isinstance(e, ev.Status)][:2] == ["schema",
                                                                              "fallback"]


def test_context_overflow_is_explained(demo_db: Path, fake_vllm: FakeVLLM) -> None:
    error = ("This model's maximum context length is 8192 tokens. However, your request has "
             "9100 input tokens. Please reduce the length of the input messages.")
    # vLLM names the field at fault: the error is classified by it, not by its wording
    script(fake_vllm, sql=[{"status": 400, "error": error, "param": "input_tokens"}])
    answer = connect(demo_db, fake_vllm.url).ask("How many customers are there?")
    assert answer.error_type == "LLMUnavailableError"
    assert "context window" in (answer.error or "")
    first, second = by_kind(fake_vllm, SQL)  # re-trimmed once before giving up
    # the retry is genuinely smaller, never the refused prompt again
    assert len(second["body"]["messages"][0]["content"]) < \
        len(first["body"]["messages"][0]["content"])


def test_context_overflow_is_not_resent_when_nothing_can_be_cut(
        demo_db: Path, fake_vllm_factory: Callable[..., FakeVLLM]) -> None:
    server = fake_vllm_factory(max_model_len=200)  # not even the prompt's frame fits
    server.script(replies=[{"content": "SELECT 1"}])
    answer = connect(demo_db, server.url).ask("How many customers are there?")
    assert "context window" in (answer.error or "")
    assert len(by_kind(server, SQL)) == 1  # the same prompt would fail the same way


# -- the CLI ------------------------------------------------------------------------------------
def run_cli(*args: str, timeout_s: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TABLECHAT_")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "tablechat", "ask", *args],
        capture_output=True, text=True, timeout=timeout_s, env=environ, check=False,
    )


def test_a_program_that_never_closes_exits_quietly(demo_db: Path, fake_vllm: FakeVLLM) -> None:
    script(fake_vllm)
    program = (
        "import sys, tablechat\n"
        "tc = tablechat.connect(sys.argv[1], llm=sys.argv[2], llm_max_retries=0)\n"
        "print(tc.ask('How many customers are there?').text)\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TABLECHAT_")}
    done = subprocess.run([sys.executable, "-c", program, str(demo_db), fake_vllm.url],
                          capture_output=True, text=True, timeout=60, env=environ, check=False)
    assert done.returncode == 0, done.stderr
    assert "There are 5000 customers." in done.stdout
    # the transport's aiohttp session is closed at exit: no "Unclosed client session"
    assert "Unclosed" not in done.stderr and "Traceback" not in done.stderr


def test_cli_ask_through_vllm(demo_db: Path, fake_vllm: FakeVLLM) -> None:
    script(fake_vllm)
    done = run_cli("How many customers are there?", "--database", str(demo_db),
                   "--llm-url", fake_vllm.url)
    assert done.returncode == 0, done.stderr
    assert "engine: llm (model fake-sql-model)" in done.stderr
    assert "5000" in done.stdout and "There are 5000 customers." in done.stdout


def test_cli_ask_json(demo_db: Path, fake_vllm: FakeVLLM) -> None:
    script(fake_vllm)
    done = run_cli("How many customers are there?", "--database", str(demo_db),
                   "--llm-url", fake_vllm.url, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["engine"] == "llm" and data["rows"] == [[5000]]
    assert data["sql"].startswith("SELECT COUNT(*)") and data["text"]


def test_cli_dead_server_says_it_answered_offline(demo_db: Path) -> None:
    done = run_cli("How many customers are there?", "--database", str(demo_db),
                   "--llm-url", closed_port_url())
    assert "LLM server unreachable, answered offline" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_cli_slow_server_gives_up_in_time(demo_db: Path, fake_vllm: FakeVLLM) -> None:
    script(fake_vllm, sql=[{"content": "{}", "fault": "hang"}])
    start = time.monotonic()
    done = run_cli("How many customers are there?", "--database", str(demo_db),
                   "--llm-url", fake_vllm.url, "--json",
                   TABLECHAT_LLM_TIMEOUT="1", TABLECHAT_LLM_MAX_RETRIES="0")
    assert time.monotonic() - start < 30
    assert "did not answer in time" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    json.loads(done.stdout)  # --json stays JSON


@pytest.mark.parametrize("fault", ["malformed_sse", "drop"])
def test_cli_garbling_server(demo_db: Path, fake_vllm: FakeVLLM, fault: str) -> None:
    script(fake_vllm, sql=[{"content": json.dumps({"sql": COUNT_SQL}), "fault": fault}])
    done = run_cli("How many customers are there?", "--database", str(demo_db),
                   "--llm-url", fake_vllm.url, TABLECHAT_LLM_MAX_RETRIES="0")
    assert "Traceback" not in done.stderr + done.stdout
    assert "LLM server" in done.stderr

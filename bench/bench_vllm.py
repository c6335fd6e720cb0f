"""The vLLM path against the fake vLLM server (tests/support/fake_vllm.py) at 20 ms per token:

(a) time-to-first-token overhead: the moment the caller of ``TableChat.stream`` sees the first
    answer token minus the moment the server sent it (the server logs ``first_token_sent_at``;
    both clocks are this machine's ``time.time()``), p50 and p95;
(b) 32 concurrent questions through the Python API (``asyncio.gather`` of ``TableChat.aask``):
    throughput as a share of the ideal, 32 / (single-question latency), i.e. what 32 questions
    would take if they overlapped perfectly on a server that never slows down.

"Bare ChatOpenAI" makes the same two calls through LangChain's ChatOpenAI as it comes (the
openai SDK on httpx underneath), as tablechat's own models do (on vLLM, replies used whole
come whole: vLLM aborts a request whose client leaves, stream or not). "ChatOpenAI on the
SDK's aiohttp client" is the same with ``http_async_client=openai.DefaultAioHttpClient()``:
measured here to decide whether tablechat should use it (issue 13). Client CPU is
``time.process_time`` of this process (the fake server is another process), per question,
alone and under the 32 concurrent questions.

"Plain aiohttp" POSTs the two request bodies tablechat sent for one question, with nothing
else: the ceiling of this setup (the fake server and the client share the machine). The 32
questions start at the same instant on one interpreter, so the CPU each spends before and
between its two requests runs one question after another instead of overlapping the waits:
the share of ideal falls as the client CPU per question grows.

The fake server is started with TCP_NODELAY on its sockets, as uvicorn (under vLLM) sets it:
without it, Nagle's algorithm holds each small SSE write until the client's delayed ACK (up to
40 ms on Linux), which would be measured as our overhead. The row "fake server without
TCP_NODELAY" shows that effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import Row, p50, percentile

TOKEN_DELAY = 0.02  # seconds per generated token, streamed or not
QUESTION = "How many customers are there?"
SQL = "SELECT count(*) AS n FROM customers"
ANSWER = "There are 5000 customers in the demo shop."
TTFT_RUNS = 40
LATENCY_RUNS = 8
CONCURRENT = 32


_NODELAY_SERVER = """\
import socket, sys
sys.path.insert(0, {root!r})
from tests.support import fake_vllm


class NoDelayHandler(fake_vllm.Handler):
    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


fake_vllm.Handler = NoDelayHandler
fake_vllm.main()
"""


@contextlib.contextmanager
def _fake_server(nodelay: bool = True) -> Iterator[Any]:
    """The fake vLLM server in its own process; with TCP_NODELAY like uvicorn by default."""
    from tests.support import fake_vllm_client as client

    if not nodelay:
        with client.FakeVLLM() as server:
            yield server
        return
    with tempfile.TemporaryDirectory(prefix="bench-vllm-") as tmp:
        script = Path(tmp) / "fake_vllm_nodelay.py"
        script.write_text(_NODELAY_SERVER.format(root=str(client.REPO_ROOT)))
        original, client.SERVER_SCRIPT = client.SERVER_SCRIPT, script
        try:
            server = client.FakeVLLM().start()
        finally:
            client.SERVER_SCRIPT = original
        try:
            yield server
        finally:
            server.stop()


def _script(server: Any) -> None:
    server.script(rules=[
        {"match": "Reply with one word: data or chat", "on": "prompt",
         "reply": {"content": "data", "token_delay": TOKEN_DELAY}},
        {"match": "## Database schema", "on": "prompt",
         "reply": {"content": json.dumps({"sql": SQL}), "token_delay": TOKEN_DELAY}},
        {"match": "SQL that was run", "on": "prompt",
         "reply": {"content": ANSWER, "token_delay": TOKEN_DELAY}},
    ])


def _answer_requests(server: Any) -> list[dict[str, Any]]:
    # the answer request is the one that is not the SQL's
    return [r for r in server.chat_requests()
            if "SQL that was run" in json.dumps(r["body"]["messages"])]


async def _first_token_at(tc: Any) -> float:
    seen = 0.0
    async for event in tc.stream(QUESTION):
        if event.kind == "token" and not seen:
            seen = time.time()
        if event.kind == "error":
            raise RuntimeError(event.message)
    return seen


def _ttft_overheads(tc: Any, server: Any) -> list[float]:
    overheads = []
    for _ in range(TTFT_RUNS):
        server.reset()
        _script(server)
        seen = asyncio.run(_first_token_at(tc))  # a caller with its own event loop
        (sent,) = [r["first_token_sent_at"] for r in _answer_requests(server)]
        overheads.append((seen - sent) * 1000)
    return overheads


def _single_latency(tc: Any) -> float:
    samples = []
    for _ in range(LATENCY_RUNS):
        start = time.perf_counter()
        answer = tc.ask(QUESTION)
        samples.append(time.perf_counter() - start)
        if answer.error:
            raise RuntimeError(answer.error)
    return statistics.median(samples)


def _concurrent_wall(tc: Any) -> float:
    return _concurrent(tc)[0]


def _concurrent(tc: Any) -> tuple[float, float]:
    """(wall s, client CPU s per question) for CONCURRENT questions at once."""

    async def many() -> list[Any]:
        return await asyncio.gather(*(tc.aask(QUESTION) for _ in range(CONCURRENT)))

    cpu = time.process_time()
    start = time.perf_counter()
    answers = asyncio.run(many())
    wall = time.perf_counter() - start
    cpu = (time.process_time() - cpu) / CONCURRENT
    failed = [a.error for a in answers if a.error]
    if failed:
        raise RuntimeError(f"{len(failed)} of {CONCURRENT} failed: {failed[0]}")
    return wall, cpu


def _bare_prompts(tc: Any) -> tuple[list[Any], list[Any]]:
    """The SQL and answer prompts tablechat sends for QUESTION (for the bare-LangChain run)."""
    from tablechat.agent.sql_agent import answer_messages, sql_messages

    snap = tc.snapshot()
    sql = sql_messages({"dialect": "duckdb", "schema": snap.to_prompt(),
                        "semantic": tc.semantic.to_prompt() if tc.semantic else "",
                        "max_rows": 1000, "history": "(none)", "question": QUESTION,
                        "structured": True})
    answer = answer_messages({"question": QUESTION, "sql": SQL, "row_count": 1,
                              "truncated": "", "table": "| n |\n|---|\n| 5000 |"})
    return sql, answer


def _bare(
    server: Any, prompts: tuple[list[Any], list[Any]], *, aiohttp: bool = False
) -> tuple[float, float, float, float]:
    """The same two calls through a bare ChatOpenAI: (latency s, CPU s per question, 32-wall s,
    CPU s per question under 32)."""
    import openai
    from langchain_openai import ChatOpenAI

    sql_prompt, answer_prompt = prompts
    schema = {"json": {"type": "object", "properties": {"sql": {"type": "string"}}}}

    async def one(model: Any) -> None:
        # as TableChat.aask makes them: both replies whole (stream() streams the answer)
        await model.bind(extra_body={"structured_outputs": schema}).ainvoke(sql_prompt)
        await model.ainvoke(answer_prompt)

    async def measure() -> tuple[float, float, float, float]:
        timeout = openai.Timeout(60, connect=5)
        extra = {"http_async_client": openai.DefaultAioHttpClient(timeout=timeout)} \
            if aiohttp else {}
        model = ChatOpenAI(**server.chat_openai_kwargs(timeout=timeout, max_tokens=512),
                           **extra)
        await one(model)
        samples, cpu = [], time.process_time()
        for _ in range(LATENCY_RUNS):
            start = time.perf_counter()
            await one(model)
            samples.append(time.perf_counter() - start)
        cpu = (time.process_time() - cpu) / LATENCY_RUNS
        many_cpu = time.process_time()
        start = time.perf_counter()
        await asyncio.gather(*(one(model) for _ in range(CONCURRENT)))
        wall = time.perf_counter() - start
        many_cpu = (time.process_time() - many_cpu) / CONCURRENT
        await model.root_async_client.close()
        return statistics.median(samples), cpu, wall, many_cpu

    return asyncio.run(measure())


def _raw(server: Any, bodies: list[bytes]) -> tuple[float, float, float]:
    """The setup's ceiling: the same two request bodies tablechat sent, POSTed with plain
    aiohttp (no LangChain, no guard, no database): (latency s, 32-wall s, CPU s per question
    under 32)."""
    import aiohttp

    url = server.url.rstrip("/") + "/chat/completions"
    headers = {"Content-Type": "application/json"}

    async def one(session: Any) -> None:
        for body in bodies:
            async with session.post(url, data=body, headers=headers) as reply:
                await reply.read()

    async def measure() -> tuple[float, float, float]:
        async with aiohttp.ClientSession() as session:
            await one(session)
            samples = []
            for _ in range(LATENCY_RUNS):
                start = time.perf_counter()
                await one(session)
                samples.append(time.perf_counter() - start)
            cpu, start = time.process_time(), time.perf_counter()
            await asyncio.gather(*(one(session) for _ in range(CONCURRENT)))
            wall = time.perf_counter() - start
            return statistics.median(samples), wall, (time.process_time() - cpu) / CONCURRENT

    return asyncio.run(measure())


def run() -> list[Row]:
    import tablechat

    with _fake_server() as server:
        _script(server)
        tc = tablechat.connect(None, llm=server.url, llm_max_retries=0)
        try:
            tc.ask(QUESTION)  # warm-up: probe, client, schema, prompt caches
            overheads = _ttft_overheads(tc, server)
            server.reset()
            _script(server)
            cpu = time.process_time()
            single = _single_latency(tc)
            cpu = (time.process_time() - cpu) / LATENCY_RUNS
            # one question's two requests (asked one at a time), exactly as tablechat sent them
            bodies = [json.dumps(r["body"]).encode() for r in server.chat_requests()[:2]]
            wall, many_cpu = _concurrent(tc)
            prompts = _bare_prompts(tc)
        finally:
            tc.close()
        bare_single, bare_cpu, bare_wall, bare_many_cpu = _bare(server, prompts)
        aio_single, aio_cpu, aio_wall, aio_many_cpu = _bare(server, prompts, aiohttp=True)
        raw_single, raw_wall, raw_many_cpu = _raw(server, bodies)
    with _fake_server(nodelay=False) as server:
        _script(server)
        tc = tablechat.connect(None, llm=server.url, llm_max_retries=0)
        try:
            tc.ask(QUESTION)
            nagle = _ttft_overheads(tc, server)
        finally:
            tc.close()
    share = single / wall * 100  # (32 / wall) / (32 / single)
    bare_share = bare_single / bare_wall * 100
    o50, o95 = p50(overheads), percentile(overheads, 95)
    bare = "bare ChatOpenAI, same 2 calls"
    aio = "ChatOpenAI on the SDK's aiohttp client, same 2 calls"
    return [
        Row("vLLM path: one question, end to end (20 ms/token)", single * 1000, "ms",
            theirs=aio_single * 1000, alternative=aio),
        Row("vLLM path: client CPU per question", cpu * 1000, "ms", theirs=aio_cpu * 1000,
            alternative=aio),
        Row(f"vLLM path: {CONCURRENT} concurrent questions, wall time", wall * 1000, "ms",
            theirs=aio_wall * 1000, alternative=aio),
        Row(f"vLLM path: client CPU per question, {CONCURRENT} concurrent", many_cpu * 1000, "ms",
            theirs=aio_many_cpu * 1000, alternative=aio),
        Row("vLLM path: time-to-first-token overhead p50", o50, "ms", goal="< 30 ms",
            ok=o50 < 30),
        Row("vLLM path: time-to-first-token overhead p95", o95, "ms"),
        Row("vLLM path: TTFT overhead p50, fake server without TCP_NODELAY", p50(nagle), "ms"),
        Row("vLLM path: one question, end to end (20 ms/token)", single * 1000, "ms",
            theirs=bare_single * 1000, alternative=bare),
        Row("vLLM path: client CPU per question", cpu * 1000, "ms", theirs=bare_cpu * 1000,
            alternative=bare),
        Row(f"vLLM path: client CPU per question, {CONCURRENT} concurrent", many_cpu * 1000, "ms",
            theirs=bare_many_cpu * 1000, alternative=bare),
        Row(f"vLLM path: {CONCURRENT} concurrent questions, wall time", wall * 1000, "ms",
            theirs=bare_wall * 1000, alternative=bare),
        Row(f"vLLM path: {CONCURRENT} concurrent, throughput", CONCURRENT / wall, "q/s",
            theirs=CONCURRENT / single, alternative="ideal: 32 / one question's latency"),
        Row(f"vLLM path: {CONCURRENT} concurrent, share of ideal throughput", share, "%",
            theirs=bare_share, alternative=bare, goal=">= 90%", ok=share >= 90),
        Row(f"vLLM path: {CONCURRENT} concurrent, share of ideal throughput", share, "%",
            theirs=raw_single / raw_wall * 100,
            alternative="plain aiohttp, same 2 requests (the setup's ceiling)"),
        Row(f"vLLM path: client CPU per question, {CONCURRENT} concurrent", many_cpu * 1000,
            "ms", theirs=raw_many_cpu * 1000,
            alternative="plain aiohttp, same 2 requests"),
        Row(f"vLLM path: {CONCURRENT} x client CPU / one question's latency",
            CONCURRENT * cpu / single * 100, "%", goal="< 100%: needed, not enough"),
    ]


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(run())

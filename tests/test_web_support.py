"""Helpers for the web tests (no tests here): a scripted chat model that picks its reply by
regex on the prompt (safe under concurrency, unlike a list of replies), and a live server
(uvicorn on tablechat's background loop, on 127.0.0.1 and a free port)."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

import tablechat
from tablechat.core import TableChat

# (pattern, reply): the pattern is searched in "<kind>: <question>\n---\n<last message>",
# kind being sql, repair or answer.
DEMO_RULES: list[tuple[str, str]] = [
    (r"^sql: How many customers", "SELECT count(*) AS customers FROM customers"),
    (r"^answer: How many customers", "There are 5,000 customers."),
    (r"^sql: Revenue by region",
     "SELECT r.name AS region, round(sum(oi.quantity * oi.unit_price), 2) AS revenue "
     "FROM order_items oi JOIN orders o ON o.id = oi.order_id "
     "JOIN customers c ON c.id = o.customer_id JOIN regions r ON r.id = c.region_id "
     "GROUP BY r.name ORDER BY revenue DESC"),
    (r"^answer: Revenue by region", "Europe brings the most revenue."),
    (r"^sql: Orders per month",
     "SELECT date_trunc('month', order_date) AS month, count(*) AS orders FROM orders "
     "GROUP BY 1 ORDER BY 1"),
    (r"^answer: Orders per month", "Orders grow every year and peak in November."),
    (r"^sql: List every customer", "SELECT id, name, country FROM customers ORDER BY id"),
    (r"^answer: List every customer", "Here are the customers."),
    (r"^sql: Which regions", "SELECT name FROM regions ORDER BY id"),
    (r"^answer: Which regions", "There are five regions."),
    # a wrong column first; the repair prompt carries the guard's error
    (r"^sql: Customers per segmnt", "SELECT segmnt, count(*) AS n FROM customers GROUP BY 1"),
    (r"^repair: .*segmnt",
     "SELECT segment, count(*) AS customers FROM customers GROUP BY 1 ORDER BY 2 DESC"),
    (r"^answer: Customers per segmnt", "Consumers are the largest segment."),
    # follow-up: only answerable from the previous SQL in the history
    (r"^sql: Only Europe.*SQL: SELECT r\.name AS region",
     "SELECT r.name AS region, round(sum(oi.quantity * oi.unit_price), 2) AS revenue "
     "FROM order_items oi JOIN orders o ON o.id = oi.order_id "
     "JOIN customers c ON c.id = o.customer_id JOIN regions r ON r.id = c.region_id "
     "WHERE r.name = 'Europe' GROUP BY r.name"),
    (r"^answer: Only Europe", "Europe alone."),
    # uploads: "How many rows are in <table>?"
    (r"^sql: How many rows are in (\w+)", "SELECT count(*) AS n FROM {1}"),
    (r"^answer: How many rows are in", "Counted."),
    (r"^repair: .*count\(\*\) AS n FROM (\w+)", "SELECT count(*) AS n FROM {1}"),
    (r"^sql: Average age of pets", "SELECT round(avg(age), 1) AS avg_age FROM pets"),
    (r"^answer: Average age of pets", "The pets are 4 years old on average."),
    (r"^sql: Something slow", "SELECT count(*) AS n FROM range(3)"),
    (r"^answer: Something slow", "Slowly: three."),
    (r"^sql: Drop everything", "DROP TABLE customers"),
    (r"^repair: .*(DROP|DELETE)", "DELETE FROM customers"),
]


def _text(message: BaseMessage) -> str:
    return message.content if isinstance(message.content, str) else str(message.content)


class ScriptedChatModel(BaseChatModel):
    """A chat model whose reply depends on the prompt, with an optional async delay per call
    (and a delay per streamed token)."""

    rules: list[tuple[str, str]] = DEMO_RULES
    delay: float = 0.0
    token_delay: float = 0.0
    slow: tuple[str, float] = ("Something slow", 4.0)  # (pattern, extra seconds) for Stop tests
    prompts: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def reply(self, messages: list[BaseMessage]) -> str:
        last = _text(messages[-1])
        self.prompts.append(last)
        kind, question = self.kind_of(last)
        key = f"{kind}: {question}\n---\n{last}"
        for pattern, reply in self.rules:
            found = re.search(pattern, key, re.S | re.I)
            if found:
                return reply.format(found.group(0), *found.groups())
        defaults = {"answer": "Done.", "router": "data", "rewrite": question.strip(),
                    "chat": "Hello! Ask me about the data."}
        return defaults.get(kind, "SELECT 1 AS one")

    @staticmethod
    def kind_of(last: str) -> tuple[str, str]:
        """The call's kind (sql, repair, answer, router, rewrite, chat) and its question."""
        latest = re.search(r"## Latest message\s*\n(.*)", last)
        if "Your previous query failed" in last:
            kind, question = "repair", ""
        elif "SQL that was run" in last:
            found = re.search(r"Question: (.*)", last)
            kind, question = "answer", found.group(1) if found else ""
        elif "You route messages" in last:
            kind, question = "router", latest.group(1) if latest else ""
        elif "Rewrite the latest message" in last:
            kind, question = "rewrite", latest.group(1) if latest else ""
        elif "## Question" in last:
            kind, question = "sql", last.rsplit("## Question", 1)[-1].strip()
        else:
            kind, question = "chat", last
        return kind, question

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        if self.delay:
            time.sleep(self.delay)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self.reply(messages)))])

    async def _pause(self, messages: list[BaseMessage]) -> None:
        seconds = self.delay
        # the question asked, not the whole prompt: a question after a stopped slow one has
        # it in its history, and was slow too (3 calls x 4 s: the browser suite's flake after
        # Stop on a loaded machine)
        if re.search(self.slow[0], self.kind_of(_text(messages[-1]))[1]):
            seconds += self.slow[1]
        if seconds:
            await asyncio.sleep(seconds)

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:
        await self._pause(messages)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self.reply(messages)))])

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        await self._pause(messages)
        for word in re.findall(r"\S+\s*", self.reply(messages)):
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The app served as ``tablechat serve`` serves it: uvicorn on tablechat's background loop
    (``BackgroundServer``), on 127.0.0.1 and a free port."""

    def __init__(self, tc: TableChat) -> None:
        from tablechat.web.server import BackgroundServer, create_app

        self.tc = tc
        self.app = create_app(tc)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = BackgroundServer(self.app, host="127.0.0.1", port=self.port,
                                       log_level="warning")

    @property
    def metrics(self) -> Any:
        return self.app.state.metrics

    def start(self, ready: str = "/healthz") -> LiveServer:
        """Serve; return once ``ready`` answers 200 (``/healthz`` waits for the first check
        of the LLM: a test with an LLM that never answers waits on another route)."""
        future = self.server.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if future.done():
                future.result()  # raises why it stopped
                raise RuntimeError("the server stopped while starting")
            if self.server.started:
                try:
                    if httpx.get(f"{self.url}{ready}", timeout=2).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        self.server.stop(timeout=15)


@contextmanager
def live_server(tc: TableChat | None = None, **settings: Any) -> Iterator[LiveServer]:
    tc = tc or tablechat.connect(llm=ScriptedChatModel(), **settings)
    server = LiveServer(tc).start()
    try:
        yield server
    finally:
        server.stop()

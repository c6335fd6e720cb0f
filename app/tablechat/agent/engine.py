"""The LLM engine: route each message to plain chat or to text-to-SQL (rewriting follow-ups
into standalone questions first)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from .. import events as ev
from ..answer import Usage
from .budget import TokenCounter
from .chat import ChatResponder
from .client import LLMClient
from .context import QuestionContext
from .rewrite import Rewriter
from .router import Router
from .sql_agent import SQLAgent


class LLMEngine:
    """What ``TableChat`` runs when an LLM is reachable."""

    name = "llm"

    def __init__(
        self,
        client: LLMClient,
        *,
        counter: TokenCounter | None = None,
        max_model_len: int | None = None,
        max_tokens: int = 512,
        route: bool = True,
        route_shortcut: bool = True,
        rewrite: bool = True,
    ) -> None:
        self.client = client
        self.sql = SQLAgent(client, counter=counter, max_model_len=max_model_len,
                            max_tokens=max_tokens)
        self.router = Router(client, shortcut=route_shortcut) if route else None
        self.rewriter = Rewriter(client) if rewrite else None
        self.chat = ChatResponder(client)

    @property
    def label(self) -> str:
        return self.client.label

    @property
    def structured(self) -> bool:
        return self.client.structured

    async def run(self, ctx: QuestionContext, usage: Usage) -> AsyncIterator[ev.Event]:
        route = "data"
        if self.router is not None:
            known = self.router.obvious(ctx)
            if known is None:
                yield ev.Status(step="route", message="reading the question")
                known = await self.router.ask(ctx, usage)
            route = known
        if route == "chat":
            async for event in self.chat.run(ctx, usage):
                yield event
            return
        question = ctx.question
        if self.rewriter is not None and ctx.history:
            question = await self.rewriter.rewrite(ctx, usage)
            if question != ctx.question:
                yield ev.Status(step="rewrite", message=f"understood as: {question}")
        async for event in self.sql.run(ctx, usage, question=question):
            yield event


__all__ = ["LLMEngine"]

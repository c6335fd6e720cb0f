"""Plain chat: messages that need no query, answered by the same model with the history."""

from __future__ import annotations

from collections.abc import AsyncIterator

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from .. import events as ev
from ..answer import Usage
from .client import LLMClient
from .context import QuestionContext
from .prompts import render
from .router import table_list

CHAT_HISTORY_MESSAGES = 12
CHAT_MESSAGE_CHARS = 2000


def chat_messages(ctx: QuestionContext) -> list[BaseMessage]:
    system = render(
        "chat",
        database=ctx.snapshot.name or ctx.database.name or "database",
        tables=table_list(ctx),
    )
    messages: list[BaseMessage] = [SystemMessage(system)]
    for m in ctx.history[-CHAT_HISTORY_MESSAGES:]:
        text = m.content.strip()[:CHAT_MESSAGE_CHARS]
        if m.role == "user":
            messages.append(HumanMessage(text))
        else:
            sql = f"\n\n(the query behind this answer: {m.sql})" if m.sql else ""
            messages.append(AIMessage(text + sql))
    messages.append(HumanMessage(ctx.question))
    return messages


class ChatResponder:
    def __init__(self, client: LLMClient) -> None:
        self.client = client

    async def run(self, ctx: QuestionContext, usage: Usage) -> AsyncIterator[ev.Event]:
        yield ev.Status(step="chat", message="answering (no query needed)")
        if not ctx.stream_tokens:
            text = await self.client.invoke(chat_messages(ctx), usage, step="chat")
            yield ev.AnswerText(text=text.strip(), engine="llm")
            return
        parts: list[str] = []
        async for text in self.client.stream(chat_messages(ctx), usage, step="chat"):
            parts.append(text)
            yield ev.Token(text=text)
        yield ev.AnswerText(text="".join(parts).strip(), engine="llm")


__all__ = ["ChatResponder", "chat_messages"]

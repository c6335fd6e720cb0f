"""The router: does a message need the database ("data") or is it conversation ("chat")?

Where the backend enforces constraints the reply is one of the two words (vLLM's ``choice``,
a llama.cpp grammar); other servers reply in free text and the first of the two words found
decides. Anything else (an empty or odd reply) counts as "data": a data question answered as
chat would be a guess.
"""

from __future__ import annotations

import re
from typing import Literal

from langchain_core.messages import HumanMessage

from ..answer import Usage
from .client import LLMClient
from .context import QuestionContext
from .prompts import render
from .relevance import scores
from .sql_agent import render_history

Route = Literal["data", "chat"]
ROUTES: tuple[Route, ...] = ("data", "chat")
ROUTER_MAX_TOKENS = 8
MAX_TABLE_NAMES = 60
# A first message naming a table, column, synonym or metric at least this strongly is a data
# question: no router call (a column-name match on a 7-table schema scores ~3, a table ~8).
DATA_SHORTCUT_SCORE = 3.0
_WORD = re.compile(r"\b(data|chat)\b", re.I)


def table_list(ctx: QuestionContext, limit: int = MAX_TABLE_NAMES) -> str:
    names = list(ctx.prompt_snapshot.tables)  # unusable (hostile) names left out
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def parse_route(reply: str) -> Route:
    """The route named in a reply ("data" when it names neither)."""
    match = _WORD.search(reply or "")
    return "chat" if match is not None and match.group(1).lower() == "chat" else "data"


def router_prompt(ctx: QuestionContext) -> str:
    return render(
        "router",
        database=ctx.snapshot.name or ctx.database.name or "database",
        tables=table_list(ctx),
        history=render_history(ctx.history, turns=4),
        question=ctx.question,
    )


def obvious_route(ctx: QuestionContext) -> Route | None:
    """"data" for a first message that plainly names the schema; None when the LLM decides."""
    if ctx.history:
        return None  # "why is that?" and friends need the model
    best = max(scores(ctx.snapshot, ctx.question, ctx.semantic).values(), default=0.0)
    return "data" if best >= DATA_SHORTCUT_SCORE else None


class Router:
    def __init__(self, client: LLMClient, *, shortcut: bool = True) -> None:
        self.client = client
        self.shortcut = shortcut

    def obvious(self, ctx: QuestionContext) -> Route | None:
        """The route when no LLM call is needed (see :func:`obvious_route`)."""
        return obvious_route(ctx) if self.shortcut else None

    async def route(self, ctx: QuestionContext, usage: Usage) -> Route:
        """The obvious route, else the model's choice."""
        return self.obvious(ctx) or await self.ask(ctx, usage)

    async def ask(self, ctx: QuestionContext, usage: Usage) -> Route:
        """The model's choice: one short call, constrained to the two words where the server can."""
        reply = await self.client.invoke(
            [HumanMessage(router_prompt(ctx))],
            usage,
            step="router",
            structured={"choice": list(ROUTES)},
            max_tokens=ROUTER_MAX_TOKENS,
        )
        return parse_route(reply)


__all__ = [
    "ROUTES",
    "Route",
    "Router",
    "obvious_route",
    "parse_route",
    "router_prompt",
    "table_list",
]

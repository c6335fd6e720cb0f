"""Follow-ups ("and in 2023?", "only for Europe") rewritten as standalone questions, from the
conversation and the last SQL, before text-to-SQL."""

from __future__ import annotations

import re

from langchain_core.messages import HumanMessage

from ..answer import Usage
from .client import LLMClient
from .context import QuestionContext
from .prompts import render
from .sql_agent import render_history

REWRITE_MAX_TOKENS = 160
_PREFIX = re.compile(r"^\s*(?:standalone\s+question|question|rewritten(?:\s+question)?)\s*:\s*",
                     re.I)
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)


def rewrite_prompt(ctx: QuestionContext) -> str:
    return render(
        "rewrite",
        history=render_history(ctx.history),
        last_sql=ctx.last_sql or "(none)",
        question=ctx.question,
    )


def clean_rewrite(reply: str, original: str) -> str:
    """The standalone question in ``reply``; ``original`` when the reply is unusable."""
    text = _THINK.sub("", reply or "").strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = _PREFIX.sub("", line).strip().strip('"“”\'`').strip()
    if not line or len(line) > 4 * len(original) + 400:
        return original
    return line


class Rewriter:
    def __init__(self, client: LLMClient) -> None:
        self.client = client

    async def rewrite(self, ctx: QuestionContext, usage: Usage) -> str:
        """``ctx.question`` made standalone (unchanged when there is no history)."""
        if not any(m.role == "user" for m in ctx.history):
            return ctx.question
        reply = await self.client.invoke(
            [HumanMessage(rewrite_prompt(ctx))], usage, step="rewrite",
            max_tokens=REWRITE_MAX_TOKENS,
        )
        return clean_rewrite(reply, ctx.question)


__all__ = ["Rewriter", "clean_rewrite", "rewrite_prompt"]

"""The Gradio chat UI: handlers are plain functions over TableChat."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from .. import events as ev
from ..agent.sql_agent import markdown_table
from ..core import TableChat
from ..errors import BadQuestionError


def render_progress(events: list[ev.Event]) -> str:
    """The chat bubble for a question so far: steps, SQL, a table preview and the answer."""
    parts: list[str] = []
    steps = [e.message for e in events if isinstance(e, ev.Status)]
    sql = next((e.sql for e in reversed(events) if isinstance(e, ev.SQL)), None)
    table = next((e for e in reversed(events) if isinstance(e, ev.Table)), None)
    tokens = "".join(e.text for e in events if isinstance(e, ev.Token))
    answer = next((e for e in events if isinstance(e, ev.AnswerText)), None)
    error = next((e for e in events if isinstance(e, ev.Error)), None)
    done = any(isinstance(e, ev.Done) for e in events)
    if steps and not done:
        parts.append(f"*{steps[-1]}…*")
    if answer is not None:
        parts.append(answer.text)
    elif tokens:
        parts.append(tokens)
    if sql:
        parts.append(f"```sql\n{sql}\n```")
    if table is not None:
        shown = markdown_table(table.columns, table.rows, 20)
        more = f"\n\n*showing 20 of {len(table.rows)} rows*" if len(table.rows) > 20 else ""
        parts.append(shown + more)
    if error is not None:
        parts.append(f"**Error:** {error.message}")
    if answer is not None and done:
        parts.append(f"<sub>answered by: {answer.engine}</sub>")
    return "\n\n".join(parts) or "…"


async def respond(tc: TableChat, message: str, history: list[Any]) -> AsyncIterator[str]:
    """Stream the bubble text for ``message``; bad input becomes a message, not a traceback."""
    events: list[ev.Event] = []
    try:
        async for event in tc.stream(message, history):
            events.append(event)
            if not isinstance(event, ev.Token) or len(events) % 4 == 0:
                yield render_progress(events)
    except BadQuestionError as exc:
        yield f"**Error:** {exc}"
        return
    yield render_progress(events)


def build_ui(tc: TableChat) -> gr.Blocks:
    async def chat(message: str, history: list[Any]) -> AsyncIterator[str]:
        async for text in respond(tc, message, history):
            yield text

    with gr.Blocks(title="tablechat") as demo:
        gr.Markdown(f"# tablechat\nAsk **{tc.database.name}** a question.")
        gr.ChatInterface(
            chat,
            examples=["How many customers are there?", "Revenue by region"],
            concurrency_limit=tc.settings.concurrency_limit,
            cache_examples=False,
        )
    return demo

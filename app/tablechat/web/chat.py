"""The chat's logic as plain functions over TableChat: no Gradio here, so it is testable alone.

A conversation is a list of turns, dicts the core's ``normalize_history`` understands
(``{"role", "content", "sql"}``) plus display fields (``steps``, ``pending``, ``engine``,
``error``, ``seconds``, ``interpretation``, ``suggestions``) and the answer's own ``result``
with its ``work`` (SQL, table and chart as the message shows them, ``card.work``). The
Chatbot's messages are rendered from it, so retry, undo, stop and clear are list operations,
and a message the person clicks leads back to its turn (``owners``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from .. import events as ev
from ..answer import Usage
from ..core import TableChat
from ..errors import BadQuestionError
from . import card
from .formats import units_of
from .markup import code_block, plain
from .metrics import Metrics
from .results import Result, pretty_sql

Turn = dict[str, Any]
TOKEN_REFRESH_SECONDS = 0.05
STOPPED = "*(stopped)*"


@dataclass(slots=True)
class Update:
    """What one step of a question changes on screen. ``None`` fields stay as they were."""

    conv: list[Turn]
    sql: str | None = None
    result: Result | None = None
    notice: str | None = None
    done: bool = False
    events: list[ev.Event] = field(default_factory=list)


def history_of(conv: list[Turn]) -> list[Turn]:
    """The conversation as the core's history: finished turns only, with their SQL."""
    out: list[Turn] = []
    for turn in conv:
        if turn.get("pending"):
            continue
        if turn.get("stopped"):  # a question without an answer is no context
            if out and out[-1]["role"] == "user":
                out.pop()
            continue
        content = turn.get("content") or ""
        if turn["role"] == "assistant" and turn.get("error") and not content:
            content = f"(error: {turn['error']})"
        out.append({"role": turn["role"], "content": content, "sql": turn.get("sql")})
    return out


def _fmt_seconds(seconds: float) -> float:
    return round(seconds, 1)


def messages(conv: list[Turn]) -> list[dict[str, Any]]:
    """The Chatbot's value: a user bubble, then each answer's steps (a collapsible "thought"
    with a spinner while it runs) and its text with the reading, the work (SQL, table, chart)
    and, after a refusal, the rewordings to click (``options``). Whatever the question, the
    model or the data wrote is shown as text (``markup``): it loads no image and runs no
    script."""
    return _render(conv)[0]


def owners(conv: list[Turn]) -> list[int]:
    """For each message of ``messages(conv)``, the index of its turn in ``conv``."""
    return _render(conv)[1]


def result_of(conv: list[Turn], message: int) -> tuple[Turn | None, Result | None]:
    """The answer a clicked message belongs to (its question's answer for a user bubble) and
    its result."""
    who = owners(conv)
    if not 0 <= message < len(who):
        return None, None
    i = who[message]
    if conv[i]["role"] == "user" and i + 1 < len(conv):
        i += 1
    turn = conv[i]
    return turn, turn.get("result")


def _render(conv: list[Turn]) -> tuple[list[dict[str, Any]], list[int]]:
    out: list[dict[str, Any]] = []
    who: list[int] = []
    last = len(conv) - 1
    for n, turn in enumerate(conv):
        if turn["role"] == "user":
            out.append({"role": "user", "content": turn.get("display") or plain(turn["content"])})
            who.append(n)
            continue
        steps: list[str] = turn.get("steps") or []
        pending = bool(turn.get("pending"))
        if steps:
            meta: dict[str, Any] = {"title": "Steps" if not pending else f"{steps[-1]}…",
                                    "status": "pending" if pending else "done"}
            if turn.get("seconds") is not None:
                meta["duration"] = _fmt_seconds(turn["seconds"])
            out.append({"role": "assistant", "metadata": meta,
                        "content": "\n".join(f"- {plain(s)}" for s in steps)})
            who.append(n)
        message: dict[str, Any] = {"role": "assistant", "content": answer_text(turn)}
        # Gradio shows options under the last message only: the rewordings of a refusal
        if n == last and turn.get("suggestions") and not turn.get("pending"):
            message["options"] = [{"label": q, "value": q} for q in turn["suggestions"]]
        out.append(message)
        who.append(n)
    return out, who


def answer_text(turn: Turn) -> str:
    """An answer's message: its sentence, how the question was read, its work, its footer."""
    parts: list[str] = []
    text = (turn.get("content") or "").strip()
    if text:
        parts.append(plain(text))
    elif turn.get("pending"):
        parts.append("…")
    if turn.get("error"):
        parts.append(f"⚠️ **{plain(turn['error'])}**")
    if turn.get("stopped"):
        parts.append(STOPPED)
    if turn.get("interpretation"):
        parts.append(f'<div class="tc-read-as">{plain(turn["interpretation"])}</div>')
    if turn.get("work"):
        parts.append(turn["work"])
    footer = []
    if turn.get("rows") is not None:
        footer.append(f"{turn['rows']:,} row{'s' if turn['rows'] != 1 else ''}")
    if turn.get("engine"):
        footer.append(f"answered by {plain(turn['engine'])}")
    if footer and not turn.get("pending"):
        parts.append(f"<sub>{' · '.join(footer)}</sub>")
    return "\n\n".join(parts) or "…"


def engine_label(tc: TableChat, engine: str) -> str:
    if engine == "llm":
        return f"LLM ({tc.model_label})"
    if engine == "offline":
        return "the offline engine"
    return engine


async def ask(
    tc: TableChat, question: str, conv: list[Turn], *, session: str,
    metrics: Metrics | None = None, front: str = "ui",
) -> AsyncIterator[Update]:
    """Answer ``question`` in the conversation ``conv``, yielding what changes on screen.

    Bad input (empty, too long) yields one Update with a ``notice`` and the conversation
    unchanged.
    """
    history = history_of(conv)
    usage = Usage()
    units = units_of(tc.semantic)
    dialect = tc.database.dialect
    stream = tc.stream(question, history, session=session, usage=usage)
    try:
        first = await anext(aiter(stream))
    except BadQuestionError as exc:
        if metrics is not None:
            metrics.bad_request(front)
        yield Update(conv=conv, notice=f"⚠️ {plain(exc)}", done=True)
        return
    text = question.strip()
    user: Turn = {"role": "user", "content": text}
    turn: Turn = {"role": "assistant", "content": "", "sql": None, "steps": [], "pending": True}
    conv = [*conv, user, turn]
    start = time.perf_counter()

    async def chained() -> AsyncIterator[ev.Event]:
        yield first
        async for event in stream:
            yield event

    events = chained() if metrics is None else metrics.meter(chained(), front, usage)
    tokens: list[str] = []
    last_push = 0.0
    seen: list[ev.Event] = []
    source = ""  # the query as written, for an export of the whole result
    async for event in events:
        seen.append(event)
        update = Update(conv=conv, events=seen)
        turn = dict(turn)  # copy on write: earlier yields keep their own turn
        if isinstance(event, ev.Interpretation):
            turn["steps"] = [*turn["steps"], event.message]
            turn["interpretation"] = event.interpretation or turn.get("interpretation")
            turn["suggestions"] = list(event.suggestions) or turn.get("suggestions")
        elif isinstance(event, ev.Status):
            turn["steps"] = [*turn["steps"], event.message]
        elif isinstance(event, ev.SQL):
            turn["sql"] = event.sql
            source = event.source or event.sql
            turn["source"] = source  # feedback keeps the query as written (feedback_ui.py)
            # what the person sees is the query as written: never the guard's LIMIT cap + 1
            turn["shown_sql"] = pretty_sql(source, dialect)
            turn["work"] = card.work(turn["shown_sql"], None, units)
            update.sql = turn["shown_sql"]
            if event.attempt > 1:
                turn["steps"] = [*turn["steps"], f"SQL attempt {event.attempt} passed the guard"]
        elif isinstance(event, ev.Table):
            turn["rows"] = len(event.rows)
            update.result = Result(sql=turn.get("sql") or "", columns=list(event.columns),
                                   rows=list(event.rows), truncated=event.truncated,
                                   source=source, question=text)
            turn["result"] = update.result
            turn["work"] = card.work(turn.get("shown_sql"), update.result, units)
        elif isinstance(event, ev.Chart):
            # the chart belongs to the table that came just before it
            table = next((e for e in reversed(seen) if isinstance(e, ev.Table)), None)
            if table is not None:
                update.result = Result(sql=turn.get("sql") or "", columns=list(table.columns),
                                       rows=list(table.rows), truncated=table.truncated,
                                       chart=event.spec, source=source, question=text)
                turn["result"] = update.result
                turn["work"] = card.work(turn.get("shown_sql"), update.result, units)
        elif isinstance(event, ev.Token):
            tokens.append(event.text)
            turn["content"] = "".join(tokens)
            now = time.perf_counter()
            if now - last_push < TOKEN_REFRESH_SECONDS:
                continue
            last_push = now
        elif isinstance(event, ev.AnswerText):
            turn["content"] = event.text
            turn["engine"] = engine_label(tc, event.engine)
        elif isinstance(event, ev.Error):
            turn["error"] = event.message
        elif isinstance(event, ev.Done):
            turn["pending"] = False
            turn["seconds"] = time.perf_counter() - start
            update.done = True
        conv = [*conv[:-1], turn]
        update.conv = conv
        yield update


def stop(conv: list[Turn]) -> list[Turn]:
    """Mark a running answer as stopped (the Stop button cancelled it)."""
    if conv and conv[-1]["role"] == "assistant" and conv[-1].get("pending"):
        last = dict(conv[-1], pending=False, stopped=True)
        return [*conv[:-1], last]
    return conv


def last_question(conv: list[Turn]) -> tuple[str | None, list[Turn]]:
    """The last question asked and the conversation before it (for regenerate)."""
    for i in range(len(conv) - 1, -1, -1):
        if conv[i]["role"] == "user" and not conv[i].get("sql_run"):
            return conv[i]["content"], conv[:i]
    return None, conv


def undo(conv: list[Turn]) -> tuple[str, list[Turn]]:
    """Drop the last exchange; give back its question (empty for a SQL run) to edit."""
    for i in range(len(conv) - 1, -1, -1):
        if conv[i]["role"] == "user":
            text = "" if conv[i].get("sql_run") else conv[i]["content"]
            return text, conv[:i]
    return "", []


def record_sql_run(conv: list[Turn], sql: str, result: Result | None, error: str | None,
                   units: dict[str, str] | None = None) -> list[Turn]:
    """A query typed in the SQL box joins the conversation, so follow-ups build on it; its
    message shows its table and chart as an answer's does."""
    user: Turn = {"role": "user", "content": f"Run this SQL: {sql}", "sql_run": True,
                  "display": f"▶ Ran the edited SQL\n{code_block(sql, 'sql')}"}
    if result is not None:
        n = len(result.rows)
        text = f"The edited query returned {n:,} row{'s' if n != 1 else ''}."
        if result.truncated:
            text = (f"The edited query found more than {n:,} rows; the first {n:,} are shown "
                    "(the most one answer shows).")
        answer: Turn = {"role": "assistant", "content": text, "sql": result.sql,
                        "rows": n, "engine": "your SQL", "result": result,
                        "work": card.work(None, result, units or {})}
    else:
        answer = {"role": "assistant", "content": "", "error": error, "sql": None}
    return [*conv, user, answer]

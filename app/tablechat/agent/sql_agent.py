"""The text-to-SQL agent: prompt → LLM → extract → guard → execute, with a bounded repair loop,
then an answer sentence streamed from the same model.

Chains are LCEL (``RunnableLambda | model``); the model is passed in, so tests use scripted
chat models and production uses ``ChatOpenAI`` against vLLM.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableLambda

from .. import events as ev
from ..answer import Usage
from ..chart import chart_spec
from ..errors import (
    LLMUnavailableError,
    NoAnswerError,
    RetryableSQLError,
    TableChatError,
)
from ..sql.database import QueryResult
from .context import Message, QuestionContext
from .extract import extract_sql
from .prompts import render

SQL_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"sql": {"type": "string"}},
    "required": ["sql"],
    "additionalProperties": False,
}
HISTORY_TURNS = 6
ANSWER_PREVIEW_ROWS = 20


def render_history(history: list[Message]) -> str:
    if not history:
        return "(none)"
    lines = []
    for m in history[-HISTORY_TURNS:]:
        who = "User" if m.role == "user" else "Assistant"
        text = m.content.strip().replace("\n", " ")[:500]
        lines.append(f"{who}: {text}" + (f"\n  (SQL: {m.sql})" if m.sql else ""))
    return "\n".join(lines)


def markdown_table(columns: list[str], rows: list[tuple[Any, ...]], limit: int = 20) -> str:
    if not columns:
        return "(no columns)"
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns)
    body = [
        "| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows[:limit]
    ]
    return "\n".join([head, *body]) if body else head + "\n(no rows)"


def usage_of(message: BaseMessage) -> tuple[int, int]:
    meta = getattr(message, "usage_metadata", None) or {}
    return int(meta.get("input_tokens", 0) or 0), int(meta.get("output_tokens", 0) or 0)


def llm_error(exc: BaseException) -> LLMUnavailableError:
    """Turn a client exception into a message for the person."""
    name = type(exc).__name__
    text = str(exc).splitlines()[0][:300] if str(exc) else name
    if isinstance(exc, asyncio.TimeoutError | TimeoutError) or "Timeout" in name:
        return LLMUnavailableError(f"the LLM server did not answer in time ({name})")
    if "Connection" in name:
        return LLMUnavailableError(f"the LLM server is unreachable ({text})")
    if isinstance(exc, json.JSONDecodeError | ValueError) and "Rate" not in name:
        return LLMUnavailableError(f"the LLM server sent a garbled reply ({name}: {text})")
    return LLMUnavailableError(f"the LLM server failed: {name}: {text}")


class SQLAgent:
    """Answers data questions with an LLM."""

    def __init__(
        self,
        model: BaseChatModel,
        *,
        structured: bool = False,
        model_label: str | None = None,
        call_timeout: float = 60.0,
    ) -> None:
        self.model = model
        self.structured = structured
        self.label = model_label or type(model).__name__
        self.call_timeout = call_timeout
        self.sql_chain: Runnable[dict[str, Any], BaseMessage] = RunnableLambda(
            self._sql_messages
        ) | self._sql_model()
        self.answer_chain: Runnable[dict[str, Any], BaseMessage] = (
            RunnableLambda(self._answer_messages) | self.model
        )

    def _sql_model(self) -> Runnable[Any, BaseMessage]:
        if self.structured:
            return self.model.bind(
                extra_body={"structured_outputs": {"json": SQL_JSON_SCHEMA}}
            )
        return self.model

    def disable_structured(self) -> None:
        """The server refused structured_outputs: fall back to free text with extraction."""
        self.structured = False
        self.sql_chain = RunnableLambda(self._sql_messages) | self._sql_model()

    # -- prompts ------------------------------------------------------------------------------
    @staticmethod
    def _sql_messages(inputs: dict[str, Any]) -> list[BaseMessage]:
        prompt = render(
            "sql",
            dialect=inputs["dialect"],
            schema=inputs["schema"],
            semantic=inputs["semantic"] or "(none)",
            max_rows=inputs["max_rows"],
            history=inputs["history"],
            question=inputs["question"],
        )
        messages: list[BaseMessage] = [HumanMessage(prompt)]
        for attempt in inputs.get("failures", []):
            messages.append(AIMessage(attempt["reply"]))
            messages.append(HumanMessage(render("sql_repair", sql=attempt["sql"], error=attempt["error"])))
        return messages

    @staticmethod
    def _answer_messages(inputs: dict[str, Any]) -> list[BaseMessage]:
        prompt = render(
            "answer",
            question=inputs["question"],
            sql=inputs["sql"],
            row_count=inputs["row_count"],
            truncated=inputs["truncated"],
            table=inputs["table"],
        )
        return [SystemMessage("You answer questions about data briefly and exactly."), HumanMessage(prompt)]

    # -- the run ------------------------------------------------------------------------------
    async def _write_sql(self, inputs: dict[str, Any], usage: Usage) -> str:
        try:
            message = await asyncio.wait_for(self.sql_chain.ainvoke(inputs), self.call_timeout)
        except TableChatError:
            raise
        except Exception as exc:
            if self.structured and _rejects_structured(exc):
                self.disable_structured()
                return await self._write_sql(inputs, usage)
            raise llm_error(exc) from exc
        usage.add(*usage_of(message))
        content = message.content if isinstance(message.content, str) else str(message.content)
        return content

    async def run(self, ctx: QuestionContext, usage: Usage) -> AsyncIterator[ev.Event]:
        settings = ctx.settings
        inputs: dict[str, Any] = {
            "dialect": ctx.snapshot.dialect,
            "schema": ctx.extra.get("schema_prompt") or ctx.snapshot.to_prompt(),
            "semantic": ctx.semantic.to_prompt() if ctx.semantic else "",
            "max_rows": settings.max_rows,
            "history": render_history(ctx.history),
            "question": ctx.question,
            "failures": [],
        }
        result: QueryResult | None = None
        sql = ""
        for attempt in range(1, settings.max_retries + 2):
            yield ev.Status(step="write_sql", message="writing SQL" if attempt == 1 else
                            f"rewriting SQL (attempt {attempt})")
            reply = await self._write_sql(inputs, usage)
            sql = extract_sql(reply)
            try:
                if not sql:
                    from ..errors import InvalidSQLError

                    raise InvalidSQLError("the reply held no SQL query", sql=reply[:200])
                checked = ctx.check(sql)
                yield ev.SQL(sql=checked.sql, attempt=attempt)
                yield ev.Status(step="run", message="running the query")
                result = await asyncio.to_thread(ctx.run, checked)
                sql = checked.sql
                break
            except RetryableSQLError as exc:
                inputs["failures"].append({"reply": reply, "sql": sql or reply, "error": exc.for_model()})
                if attempt > settings.max_retries:
                    raise NoAnswerError(
                        f"no valid query after {attempt} attempts; last error: {exc.message}"
                    ) from exc
                yield ev.Status(step="retry", message=f"retrying: {exc.message[:200]}")
        assert result is not None
        yield ev.Table(columns=result.columns, rows=result.rows, total_rows=len(result.rows),
                       truncated=result.truncated)
        spec = chart_spec(result.columns, result.rows)
        if spec:
            yield ev.Chart(spec=spec)
        yield ev.Status(step="answer", message="writing the answer")
        answer_inputs = {
            "question": ctx.question,
            "sql": sql,
            "row_count": len(result.rows),
            "truncated": ", truncated" if result.truncated else "",
            "table": markdown_table(result.columns, result.rows, ANSWER_PREVIEW_ROWS),
        }
        parts: list[str] = []
        final: Any = None
        try:
            async with asyncio.timeout(self.call_timeout):
                async for chunk in self.answer_chain.astream(answer_inputs):
                    final = chunk if final is None else final + chunk
                    text = chunk.content if isinstance(chunk.content, str) else ""
                    if text:
                        parts.append(text)
                        yield ev.Token(text=text)
        except Exception as exc:
            # the data answer stands; only the sentence is missing
            parts = [f"Here is the result ({len(result.rows)} rows). "
                     f"The answer sentence is missing: {llm_error(exc)}"]
        if final is not None:
            usage.add(*usage_of(final))
        yield ev.AnswerText(text="".join(parts).strip(), engine="llm")


def _rejects_structured(exc: BaseException) -> bool:
    text = str(exc).lower()
    status = getattr(exc, "status_code", None)
    return status in (400, 422) and ("structured" in text or "guided" in text or "extra" in text
                                     or "unrecognized" in text or "not supported" in text)

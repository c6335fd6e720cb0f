"""The text-to-SQL agent: prompt → LLM → extract → guard → execute, with a bounded repair loop,
then an answer sentence streamed from the same model.

Prompts are built by plain functions (``sql_messages``, ``answer_messages``) and sent through an
:class:`~tablechat.agent.client.LLMClient`, so tests use scripted chat models and production
uses ``ChatOpenAI`` against vLLM or llama.cpp. Where the backend enforces constraints, the SQL
is constrained to ``{"sql": "..."}`` JSON (in the server's dialect), so the reply always
parses; other servers get free text and :func:`~tablechat.agent.extract.extract_sql`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from .. import _loop
from .. import events as ev
from ..answer import Usage
from ..backends import context_size, failure_kind
from ..chart import chart_spec
from ..errors import (
    InvalidSQLError,
    LLMUnavailableError,
    NoAnswerError,
    RetryableSQLError,
    TableChatError,
)
from ..llm import DEFAULT_MAX_MODEL_LEN
from ..redact import scrub
from ..sql.database import QueryResult
from .bounds import (
    HISTORY_MESSAGE_CHARS,
    HISTORY_SQL_CHARS,
    PromptLimits,
    clip,
    clip_tokens,
    defuse,
    error_for_model,
    result_table,
)
from .budget import SchemaFit, TokenCounter, fit_schema, input_budget
from .client import LLMClient
from .compact_schema import compact_schema, compact_table
from .context import Message, QuestionContext
from .extract import extract_sql
from .grammar import sql_grammar
from .grounding import grounded, plain_answer
from .prompts import render
from .relevance import rank_tables
from .shapes import count_example, schema_examples
from .sketch import names_table, sketch

SQL_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"sql": {"type": "string"}},
    "required": ["sql"],
    "additionalProperties": False,
}
REPLY_JSON = 'Reply with a JSON object {"sql": "<the query>"} and nothing else.'
REPLY_TEXT = "Reply with the SQL only, no explanation."
HISTORY_TURNS = 6
FEW_SHOT = 3  # verified examples shown to the model per question
LINKED_TABLES = 2  # tables a compact prompt (a small local model) shows for one question
log = logging.getLogger(__name__)
ANSWER_PREVIEW_ROWS = 20
# sampling for a second try when the model repeats a query that already failed: at
# temperature 0 a small model sent the same wrong SQL on all three attempts (issue 13)
REPEAT_TEMPERATURE = 0.7


def same_query(sql: str) -> str:
    """``sql`` with case, spacing and a final semicolon ignored, to spot a repeated query."""
    return " ".join(sql.split()).rstrip(";").strip().lower()


def render_history(history: list[Message], turns: int = HISTORY_TURNS) -> str:
    if not history:
        return "(none)"
    lines = []
    for m in history[-turns:]:
        who = "User" if m.role == "user" else "Assistant"
        text = m.content.strip().replace("\n", " ")[:500]
        lines.append(f"{who}: {text}" + (f"\n  (SQL: {m.sql})" if m.sql else ""))
    return "\n".join(lines)


def markdown_table(columns: list[str], rows: list[tuple[Any, ...]],
                   limits: PromptLimits | None = None) -> str:
    """A result for the answer prompt: bounded and defused (:func:`.bounds.result_table`)."""
    return result_table(columns, rows, limits or PromptLimits())


def sql_prompt(inputs: dict[str, Any]) -> str:
    """The SQL prompt's text (DDL, business definitions, rules, examples, the question)."""
    return render(
        "sql",
        dialect=inputs["dialect"],
        schema=inputs["schema"],
        semantic=inputs["semantic"] or "(none)",
        max_rows=inputs["max_rows"],
        reply_format=REPLY_JSON if inputs.get("structured") else REPLY_TEXT,
        examples=inputs.get("examples") or "(none)",
        history=inputs["history"],
        question=inputs["question"],
    )


def compact_messages(inputs: dict[str, Any]) -> list[BaseMessage]:
    """The SQL prompt for small local models under the schema's grammar (issue 13).

    First the part that is the same for every question on a database (llama.cpp's prefix
    cache serves it): one instruction and a worked example as a turn of its own, a count over
    one table (``prompts/sql_compact.md``; :func:`.shapes.count_example`). Then the question's
    turn (``prompts/sql_compact_question.md``): verified examples if any, the tables linked
    to the question, one line each (:mod:`.compact_schema`), the conversation if any, and
    the question. SmolLM2-135M copied whatever example it was shown into unrelated
    questions, ignored the rules, and chose the wrong table out of seven; shown the question's
    one or two tables, with the grammar built from only those, it picks the right one.
    """
    _, example_question, example_sql = inputs["example"]
    history = inputs.get("history") or ""
    examples = inputs.get("examples") or ""
    return [
        HumanMessage(render("sql_compact", dialect=inputs["dialect"],
                            example_schema=inputs["example_schema"],
                            example_question=example_question)),
        AIMessage(example_sql),
        HumanMessage(render(
            "sql_compact_question",
            examples=f"Examples:\n{examples}\n\n" if examples else "",
            schema=inputs["schema"],
            history=f"Conversation:\n{history}\n" if history and history != "(none)" else "",
            question=inputs["question"],
        )),
    ]


def linked_tables(ctx: QuestionContext, question: str) -> list[str]:
    """The tables a compact prompt shows for ``question``: the table whose rows it counts
    ("how many orders ..."), then the most relevant (:mod:`.relevance`), ``LINKED_TABLES`` in
    all; every table when none matches."""
    shown = ctx.prompt_snapshot.tables
    relevant, _ = rank_tables(ctx.snapshot, question, ctx.semantic)
    # "How many orders came from the Berlin store?": the rows counted are orders', whichever
    # table the value points at (:mod:`.sketch`)
    counted = sketch(question).counted
    first = [t for t in shown if names_table(counted, t)][:1]
    linked = list(dict.fromkeys([*first, *(t for t in relevant if t in shown)]))[:LINKED_TABLES]
    return linked or list(shown)


def render_examples(examples: list[Any]) -> str:
    """Verified examples as few-shot pairs, each cut to an earlier message's bounds (a person
    verified them, but their text is still data)."""
    lines = []
    for example in examples:
        question = clip(defuse(" ".join(example.question.split())), HISTORY_MESSAGE_CHARS)
        sql = clip(" ".join(example.sql.split()), HISTORY_SQL_CHARS)
        lines.append(f"- Q: {question}\n  SQL: {sql}")
    return "\n".join(lines)


async def few_shot(ctx: QuestionContext, question: str) -> str:
    """The verified examples closest to ``question`` (issue 14), rendered; "" when none."""
    if ctx.memory is None:
        return ""
    try:
        found = await _loop.in_thread(ctx.memory.search, question, FEW_SHOT)
    except TableChatError as exc:  # memory is a help: a store that is down fails no answer
        log.warning("verified examples unavailable: %s", scrub(str(exc)))
        return ""
    return render_examples(list(found))


def sql_messages(inputs: dict[str, Any]) -> list[BaseMessage]:
    """The SQL prompt (schema first, question last) and one turn per failed attempt."""
    messages: list[BaseMessage] = (compact_messages(inputs) if inputs.get("compact")
                                   else [HumanMessage(sql_prompt(inputs))])
    for attempt in inputs.get("failures", []):
        messages.append(AIMessage(attempt["reply"]))
        messages.append(
            HumanMessage(render("sql_repair", sql=attempt["sql"], error=attempt["error"]))
        )
    return messages


def answer_messages(inputs: dict[str, Any]) -> list[BaseMessage]:
    prompt = render(
        "answer",
        question=inputs["question"],
        sql=inputs["sql"],
        row_count=inputs["row_count"],
        truncated=inputs["truncated"],
        table=inputs["table"],
    )
    return [SystemMessage("You answer questions about data briefly and exactly."),
            HumanMessage(prompt)]


class SQLAgent:
    """Answers data questions with an LLM."""

    def __init__(
        self,
        client: LLMClient,
        *,
        counter: TokenCounter | None = None,
        max_model_len: int | None = None,
        max_tokens: int = 512,
    ) -> None:
        self.client = client
        self.counter = counter or TokenCounter()
        self.max_model_len = max_model_len
        self.max_tokens = max_tokens

    def answer_tokens(self, ctx: QuestionContext) -> int:
        """The answer sentence's reply limit (``llm_answer_max_tokens``): SmolLM2 rambled to
        the 512-token reply limit (~10 s on a CPU) on most demo questions (issue 13)."""
        return min(self.max_tokens, ctx.settings.llm_answer_max_tokens)

    def sql_tokens(self, ctx: QuestionContext) -> int:
        """The SQL reply's limit (``llm_sql_max_tokens``): a query, not prose. Under the
        schema's grammar SmolLM2 repeated a select item until the 512-token limit, ~100 s a
        question on the loaded 2-core machine (issue 13)."""
        return min(self.max_tokens, ctx.settings.llm_sql_max_tokens)

    @property
    def label(self) -> str:
        return self.client.label

    # -- schema context -----------------------------------------------------------------------
    async def schema_for(self, ctx: QuestionContext, inputs: dict[str, Any],
                         shrink: float = 1.0, at_most: int | None = None) -> SchemaFit:
        """The schema text for this question's prompt, within the model's window (and within
        ``at_most`` tokens when a prompt of that size was already refused)."""
        window = self.max_model_len or ctx.settings.max_model_len or DEFAULT_MAX_MODEL_LEN
        budget = int(input_budget(window, self.max_tokens, ctx.settings.max_retries) * shrink)
        if at_most is not None:
            budget = min(budget, at_most)
        static = {**inputs, "history": "", "question": ""}
        return await fit_schema(
            ctx.prompt_snapshot,  # names, comments and samples bounded and defused
            inputs["question"],
            lambda schema: sql_prompt({**static, "schema": schema}),
            self.counter,
            budget,
            semantic=ctx.semantic,
            dynamic=inputs["history"] + "\n" + inputs["question"],
            schema_tokens=max(1, int(ctx.limits.schema_tokens * shrink)
                              - self.counter.estimate(inputs["semantic"])),
        )

    @property
    def uses_grammar(self) -> bool:
        """Whether the SQL reply is constrained by the schema's grammar (llama.cpp's small
        local models) rather than JSON."""
        backend = self.client.backend
        return bool(backend is not None and backend.sql_grammar
                    and "grammar" in backend.constraints
                    and backend.settings.llm_sql_grammar)

    def sql_constraint(self, ctx: QuestionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """The constraint for the SQL reply: the schema's grammar where the backend prefers it
        (identifiers only from the tables shown, the ones most relevant to the question first:
        the grammar keeps a bounded number), else ``{"sql": ...}`` JSON."""
        if inputs.get("compact"):
            return {"grammar": sql_grammar(ctx.snapshot, inputs["tables"],
                                           question=inputs["question"])}
        if self.uses_grammar:
            shown = set(inputs.get("tables") or ctx.snapshot.tables)
            relevant, rest = rank_tables(ctx.snapshot, inputs["question"], ctx.semantic)
            ordered = [t for t in (*relevant, *rest) if t in shown]
            return {"grammar": sql_grammar(ctx.snapshot, ordered)}
        return {"json": SQL_JSON_SCHEMA}

    async def _write_sql(self, ctx: QuestionContext, inputs: dict[str, Any],
                         usage: Usage, temperature: float | None = None) -> str:
        constraint = self.sql_constraint(ctx, inputs)

        def build(structured: bool) -> list[BaseMessage]:
            # a grammar reply is the SQL itself; only the JSON form needs the prompt to say so
            messages = sql_messages({**inputs, "structured": structured and "json" in constraint})
            inputs["sql_prompt"] = messages  # the answer step may continue from it
            return messages

        try:
            return await self.client.invoke(
                build, usage, step="sql", structured=constraint, temperature=temperature,
                max_tokens=self.sql_tokens(ctx),
            )
        except LLMUnavailableError as exc:
            # a compact prompt is bounded (two lines of at most 40 columns): nothing to cut
            if failure_kind(exc) != "context" or inputs.get("shrunk") or inputs.get("compact"):
                raise
            refused = exc
        # The prompt did not fit. Learn the real window when the server names it (llama.cpp
        # does); estimate higher; and send a prompt genuinely smaller than the refused one,
        # never the same one again (issue 13: the "shrink once" retry resent it identically).
        inputs["shrunk"] = True
        learned = context_size(refused.__cause__) if refused.__cause__ is not None else None
        if learned is not None:
            self.max_model_len = min(self.max_model_len or learned, learned)
        self.counter.scale *= 1.5
        refused_tokens = int(inputs.get("prompt_tokens") or 0)
        fit = await self.schema_for(ctx, inputs, shrink=0.8,
                                    at_most=int(refused_tokens * 0.7) or None)
        if fit.text == inputs["schema"]:
            raise refused  # nothing left to cut: the same prompt would fail the same way
        inputs["schema"] = fit.text
        inputs["tables"] = fit.tables
        inputs["prompt_tokens"] = fit.prompt_tokens
        return await self.client.invoke(
            build, usage, step="sql", structured=self.sql_constraint(ctx, inputs),
            temperature=temperature, max_tokens=self.sql_tokens(ctx),
        )

    # -- the run ------------------------------------------------------------------------------
    async def run(
        self, ctx: QuestionContext, usage: Usage, *, question: str | None = None
    ) -> AsyncIterator[ev.Event]:
        """Events for ``question`` (default ``ctx.question``, e.g. a rewritten follow-up)."""
        settings = ctx.settings
        asked = question or ctx.question
        inputs: dict[str, Any] = {
            "dialect": ctx.snapshot.dialect,
            "schema": "",
            # the business definitions share the schema's token budget, half of it at most
            "semantic": clip_tokens(ctx.semantic.to_prompt(), ctx.limits.schema_tokens // 2,
                                    self.counter.estimate) if ctx.semantic else "",
            "max_rows": settings.max_rows,
            "structured": self.client.structured,
            "history": render_history(ctx.history),
            "question": asked,
            "examples": await few_shot(ctx, asked),
            "failures": [],
            # small local models under the schema's grammar get the short prompt
            "compact": self.uses_grammar,
        }
        example = count_example(ctx.prompt_snapshot) if inputs["compact"] else None
        if example is None:
            inputs["compact"] = False
        else:
            # no DDL, no business definitions (~1,800 tokens for the demo, prefilled on a CPU)
            shown = ctx.prompt_snapshot
            inputs["example"] = example
            inputs["example_schema"] = compact_table(shown.tables[example[0]], shown.dialect)
            inputs["tables"] = linked_tables(ctx, asked)
            inputs["schema"] = compact_schema(shown, inputs["tables"], asked)
        if not inputs["examples"] and self.uses_grammar and not inputs["compact"]:
            # a small model learns the grammar's shapes from two examples of the schema's own
            # (the same for every question: they stay in the cached prefix)
            inputs["examples"] = schema_examples(ctx.snapshot)
        if ctx.extra.get("schema_prompt"):
            inputs["schema"] = ctx.extra["schema_prompt"]
        elif not inputs["compact"]:
            fit = await self.schema_for(ctx, inputs)
            inputs["schema"] = fit.text
            inputs["tables"] = fit.tables
            inputs["prompt_tokens"] = fit.prompt_tokens
            if fit.trimmed:
                yield ev.Status(step="schema", message=f"schema trimmed to fit the model: "
                                f"{fit.note}")
        result: QueryResult | None = None
        sql = ""
        tried: dict[str, RetryableSQLError] = {}  # failed queries: never run or fed back twice
        for attempt in range(1, settings.max_retries + 2):
            yield ev.Status(step="write_sql", message="writing SQL" if attempt == 1 else
                            f"rewriting SQL (attempt {attempt})")
            reply = await self._write_sql(ctx, inputs, usage)
            sql = extract_sql(reply)
            if sql and same_query(sql) in tried:
                yield ev.Status(step="retry", message="the model repeated a query that failed; "
                                "asking again with varied sampling")
                reply = await self._write_sql(ctx, inputs, usage, REPEAT_TEMPERATURE)
                sql = extract_sql(reply)
            try:
                if not sql:
                    raise InvalidSQLError("the reply held no SQL query", sql=reply[:200])
                if same_query(sql) in tried:
                    raise tried[same_query(sql)]  # as it failed before, without running it
                checked = ctx.check(sql)
                yield ev.SQL(sql=checked.sql, attempt=attempt, source=sql)
                yield ev.Status(step="run", message="running the query")
                result = await _loop.in_thread(ctx.run, checked)
                sql = checked.sql
                break
            except RetryableSQLError as exc:
                if sql:
                    tried.setdefault(same_query(sql), exc)
                if not (sql and any(same_query(f["sql"]) == same_query(sql)
                                    for f in inputs["failures"])):
                    inputs["failures"].append(
                        {"reply": reply, "sql": sql or reply,
                         "error": error_for_model(exc.for_model())}
                    )
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
        # On llama.cpp (one slot, CPU prefill) the answer continues the SQL conversation: its
        # prompt starts with the SQL prompt the slot has just read, so only the new turn is
        # prefilled, and the next question's SQL prompt finds its stable part still there
        # (a separate answer prompt replaced it: the second question's cached share fell)
        # (the compact prompt's first message says how to answer; prompts/sql_compact.md)
        after = list(inputs.get("sql_prompt") or []) if inputs.get("compact") else []
        # the SQL turn as the model wrote it (the guard's rewrite, e.g. its LIMIT, would differ
        # from the tokens the slot holds and be prefilled again)
        async for event in self._answer(ctx, asked, sql, result, usage, after=after,
                                        said=reply):
            yield event

    async def _answer(
        self, ctx: QuestionContext, question: str, sql: str, result: QueryResult, usage: Usage,
        *, after: list[BaseMessage] | None = None, said: str | None = None,
    ) -> AsyncIterator[ev.Event]:
        yield ev.Status(step="answer", message="writing the answer")
        values = {
            "question": question,
            "sql": sql,
            "row_count": len(result.rows),
            "truncated": ", truncated" if result.truncated else "",
            "table": markdown_table(result.columns, result.rows, ctx.limits),
        }
        if after:  # the SQL turn, then only what is new: the result and what to do with it
            # (the question and the SQL are in the conversation already; every token repeated
            # here is prefilled again on a CPU, outside the prefix cache)
            messages = [*after, AIMessage(said or sql),
                        HumanMessage(render("answer_turn", **values))]
        else:
            messages = answer_messages(values)
        parts: list[str] = []
        try:
            if ctx.stream_tokens:
                async for text in self.client.stream(messages, usage, step="answer",
                                                     max_tokens=self.answer_tokens(ctx)):
                    parts.append(text)
                    yield ev.Token(text=text)
            else:
                parts.append(await self.client.invoke(messages, usage, step="answer",
                                                      max_tokens=self.answer_tokens(ctx)))
        except LLMUnavailableError as exc:
            # the data answer stands; only the sentence is missing
            parts = [f"Here is the result ({len(result.rows)} rows). "
                     f"The answer sentence is missing: {scrub(str(exc))}."]
            yield ev.AnswerText(text="".join(parts).strip(), engine="llm")
            return
        text = "".join(parts).strip()
        if not text or not grounded(text, result.rows[:ANSWER_PREVIEW_ROWS], question=question,
                                    row_count=len(result.rows)):
            # a number the result does not hold: the model's sentence would mislead
            text = plain_answer(result.columns, result.rows, result.truncated)
        yield ev.AnswerText(text=text, engine="llm")


__all__ = [
    "SQL_JSON_SCHEMA",
    "SQLAgent",
    "answer_messages",
    "markdown_table",
    "render_history",
    "sql_messages",
    "sql_prompt",
]

"""An OpenAI-compatible facade: ``GET /v1/models`` and ``POST /v1/chat/completions``.

Any OpenAI client can ask the database. The last user message is the question, earlier
messages the history (SQL in an assistant's ```sql block is read back as that turn's SQL).
The reply's content holds the answer sentence, the SQL and a Markdown table; the full result
is also in the non-standard ``tablechat`` field of a non-streamed reply.

Replies are the openai SDK's own types (``ChatCompletion``, ``ChatCompletionChunk``,
``Model``), dumped with the fields set here (``exclude_unset``), so they hold what the SDK
parses and what OpenAI's replies hold (``refusal``, ``annotations``) and nothing misspelt.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.sse import format_sse_event
from openai.types import CompletionUsage, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta

from .. import _loop
from .. import events as ev
from ..answer import Answer, Usage
from ..core import TableChat
from ..errors import BadQuestionError
from ..redact import scrub
from .auth import API_AUTH, principal_of
from .bodies import BadBodyError, ChatBody, validate
from .metrics import Metrics
from .rest import dumps, jsonable, open_stream, read_json, sse_response, stream_doc
from .sessions import ApiSessions, SessionError

MODEL_ID = "tablechat"
TABLE_ROWS = 50
_SQL_BLOCK = re.compile(r"```sql\s*\n(.*?)```", re.S | re.I)


def oai_error(status: int, message: str, param: str | None = None, *,
              scrubbed: bool = True) -> JSONResponse:
    """OpenAI's error reply: one line; no server path in a message from the core (the web
    layer's own words name routes, which scrubbing would take for paths)."""
    text = scrub(message) if scrubbed else message
    return JSONResponse({"error": {"message": text, "type": "invalid_request_error",
                                   "param": param, "code": None}}, status_code=status)


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content
                        if isinstance(p, dict) and p.get("type") in ("text", "input_text")).strip()
    raise BadQuestionError("message content must be text or a list of text parts")


def parse_messages(messages: Any) -> tuple[str, list[dict[str, Any]]]:
    """(question, history) from OpenAI chat messages."""
    if not isinstance(messages, list) or not messages:
        raise BadQuestionError("messages must be a non-empty list")
    turns: list[dict[str, Any]] = []
    for m in messages:
        if not isinstance(m, dict) or "role" not in m:
            raise BadQuestionError("each message needs a role and a content")
        role = m["role"]
        if role not in ("user", "assistant"):
            continue  # system / developer / tool messages do not change the question
        text = _text(m.get("content"))
        sql = None
        if role == "assistant":
            found = _SQL_BLOCK.findall(text)
            sql = found[-1].strip() if found else None
        turns.append({"role": role, "content": text, "sql": sql})
    if not turns or turns[-1]["role"] != "user":
        raise BadQuestionError("the last message must be the user's question")
    return turns[-1]["content"], turns[:-1]


def md_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(columns: list[str], rows: list[Any], limit: int = TABLE_ROWS) -> str:
    if not columns:
        return ""
    lines = ["| " + " | ".join(md_cell(c) for c in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(md_cell(v) for v in row) + " |" for row in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"\n_showing the first {limit} of {len(rows):,} rows_")
    elif not rows:
        lines.append("\n_no rows_")
    return "\n".join(lines)


def details(answer: Answer) -> str:
    """What follows the sentence: the SQL, the table, or the error."""
    parts = []
    if answer.error:
        parts.append(f"Error: {answer.error}")
    if answer.sql:
        parts.append(f"```sql\n{answer.sql}\n```")
    if answer.columns:
        parts.append(markdown_table(answer.columns, answer.rows))
    return "\n\n".join(parts)


def content_of(answer: Answer) -> str:
    return "\n\n".join(p for p in (answer.text.strip(), details(answer)) if p)


def _usage(usage: Usage) -> CompletionUsage:
    return CompletionUsage(prompt_tokens=usage.prompt_tokens,
                           completion_tokens=usage.completion_tokens,
                           total_tokens=usage.prompt_tokens + usage.completion_tokens)


def _wire(reply: ChatCompletion | ChatCompletionChunk | Model) -> dict[str, Any]:
    """A typed reply as JSON values: the fields set (explicit ``None`` included)."""
    return reply.to_dict(mode="json", exclude_unset=True)


def openai_router(tc: TableChat, metrics: Metrics, sessions: ApiSessions) -> APIRouter:
    """``/v1/models`` and ``/v1/chat/completions``. The request's ``user``, when it is an
    API session of the caller (``POST /api/sessions``), is the session; any other ``user``
    (OpenAI clients send end-user ids there) is no session."""
    router = APIRouter(dependencies=API_AUTH)
    created = int(time.time())

    @router.get("/v1/models")
    def models() -> dict[str, Any]:
        model = Model(id=MODEL_ID, object="model", created=created,
                      owned_by=f"tablechat ({tc.database.name})")
        return {"object": "list", "data": [_wire(model)]}

    @router.post("/v1/chat/completions", response_model=None, responses=stream_doc(
        "A chat.completion, or with \"stream\": true chat.completion.chunk events ending "
        "with data: [DONE]."))
    async def completions(request: Request) -> Response:
        usage = Usage()
        try:
            body: ChatBody = validate(ChatBody, await read_json(request))
            question, history = parse_messages(body.messages)
            session = None
            if body.user:
                try:
                    session = await _loop.in_thread(  # the store; maybe uploads to read
                        sessions.use, principal_of(request.scope), body.user)
                except SessionError:
                    session = None
            stream = await open_stream(tc, metrics, "openai", question, history, session, usage,
                                       tokens=bool(body.stream))
        except BadBodyError as exc:
            metrics.bad_request("openai")
            return oai_error(exc.status, str(exc), scrubbed=False)
        except BadQuestionError as exc:
            metrics.bad_request("openai")
            return oai_error(400, str(exc), "messages")
        model = body.model or MODEL_ID
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        now = int(time.time())
        if body.stream:
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            return sse_response(
                _chunks(stream, question, usage, cid, now, model, include_usage))
        answer = Answer(question=question)
        async for event in stream:
            answer.apply(event)
        reply = ChatCompletion(
            id=cid, object="chat.completion", created=now, model=model,
            choices=[Choice(index=0, finish_reason="stop", logprobs=None,
                            message=ChatCompletionMessage(
                                role="assistant", content=content_of(answer), refusal=None,
                                annotations=[]))],
            usage=_usage(usage))
        return JSONResponse({**_wire(reply), "tablechat": jsonable(answer.to_dict())})

    return router


async def _chunks(stream: AsyncIterator[ev.Event], question: str, usage: Usage, cid: str,
                  now: int, model: str, include_usage: bool) -> AsyncIterator[bytes]:
    def chunk(delta: ChoiceDelta, finish: Literal["stop"] | None = None, *,
              last_usage: Usage | None = None) -> bytes:
        choices = [] if last_usage is not None else [ChunkChoice(
            index=0, delta=delta, finish_reason=finish, logprobs=None)]
        data = ChatCompletionChunk(id=cid, object="chat.completion.chunk", created=now,
                                   model=model, choices=choices)
        if include_usage:
            # OpenAI's usage: null on every chunk but the last, which has no choice (an
            # assignment marks the field set, so exclude_unset keeps the null)
            data.usage = _usage(last_usage) if last_usage is not None else None
        return format_sse_event(data_str=dumps(_wire(data)))

    answer = Answer(question=question)
    streamed = False
    yield chunk(ChoiceDelta(role="assistant", content="", refusal=None))
    async for event in stream:
        answer.apply(event)
        # tokens as they come; a whole answer only when no tokens came before it
        text = event.text if isinstance(event, ev.Token) or (
            isinstance(event, ev.AnswerText) and not streamed) else ""
        if text:
            streamed = True
            yield chunk(ChoiceDelta(content=text))
    tail = details(answer)
    if tail:
        yield chunk(ChoiceDelta(content=("\n\n" if streamed else "") + tail))
    yield chunk(ChoiceDelta(), "stop")
    if include_usage:
        yield chunk(ChoiceDelta(), last_usage=usage)
    yield format_sse_event(data_str="[DONE]")

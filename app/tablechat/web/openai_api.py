"""An OpenAI-compatible facade: ``GET /v1/models`` and ``POST /v1/chat/completions``.

Any OpenAI client can ask the database. The last user message is the question, earlier
messages the history (SQL in an assistant's ```sql block is read back as that turn's SQL).
The reply's content holds the answer sentence, the SQL and a Markdown table; the full result
is also in the non-standard ``tablechat`` field of a non-streamed reply.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .. import _loop
from .. import events as ev
from ..answer import Answer, Usage
from ..core import TableChat
from ..errors import BadQuestionError
from ..redact import scrub
from .auth import principal_of
from .bodies import BadBodyError, ChatBody, validate
from .metrics import Metrics
from .rest import SSE_HEADERS, dumps, jsonable, open_stream, read_json
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


def _usage(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens}


def openai_router(tc: TableChat, metrics: Metrics, sessions: ApiSessions) -> APIRouter:
    """``/v1/models`` and ``/v1/chat/completions``. The request's ``user``, when it is an
    API session of the caller (``POST /api/sessions``), is the session; any other ``user``
    (OpenAI clients send end-user ids there) is no session."""
    router = APIRouter()
    created = int(time.time())

    @router.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{
            "id": MODEL_ID, "object": "model", "created": created,
            "owned_by": f"tablechat ({tc.database.name})"}]}

    @router.post("/v1/chat/completions", response_model=None)
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
            return StreamingResponse(
                _chunks(stream, question, usage, cid, now, model, include_usage),
                media_type="text/event-stream", headers=SSE_HEADERS)
        answer = Answer(question=question)
        async for event in stream:
            answer.apply(event)
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": now, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content_of(answer)}}],
            "usage": _usage(usage),
            "tablechat": jsonable(answer.to_dict()),
        })

    return router


async def _chunks(stream: AsyncIterator[ev.Event], question: str, usage: Usage, cid: str,
                  now: int, model: str, include_usage: bool) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        data: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": now,
                                "model": model, "choices": [
                                    {"index": 0, "delta": delta, "finish_reason": finish,
                                     "logprobs": None}]}
        if include_usage:
            data["usage"] = None
        return f"data: {dumps(data)}\n\n"

    answer = Answer(question=question)
    streamed = False
    yield chunk({"role": "assistant", "content": ""})
    async for event in stream:
        answer.apply(event)
        # tokens as they come; a whole answer only when no tokens came before it
        text = event.text if isinstance(event, ev.Token) or (
            isinstance(event, ev.AnswerText) and not streamed) else ""
        if text:
            streamed = True
            yield chunk({"content": text})
    tail = details(answer)
    if tail:
        yield chunk({"content": ("\n\n" if streamed else "") + tail})
    yield chunk({}, "stop")
    if include_usage:
        data = {"id": cid, "object": "chat.completion.chunk", "created": now, "model": model,
                "choices": [], "usage": _usage(usage)}
        yield f"data: {dumps(data)}\n\n"
    yield "data: [DONE]\n\n"

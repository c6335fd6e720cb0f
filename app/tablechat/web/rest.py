"""The REST API: ``POST /api/ask`` (JSON or SSE), uploads and sessions, health, metrics."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from .. import _loop
from .. import events as ev
from ..answer import Answer, Usage
from ..core import TableChat
from ..errors import BadQuestionError, UploadError
from .auth import principal_of
from .browse import columns_frame, tables_frame
from .metrics import Metrics

MAX_SESSION_CHARS = 200
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def jsonable(value: Any) -> Any:
    """Values JSON can hold: dates as ISO text, NaN/Infinity as null, the rest as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return jsonable(float(value))
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, uuid.UUID | dt.timedelta):
        return str(value)
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(jsonable(value), ensure_ascii=False, allow_nan=False)


def error(status: int, message: str, error_type: str) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": error_type}, status_code=status)


def session_key(request: Request, session: Any) -> str | None:
    """The API session's key: namespaced by caller, never a UI session."""
    if session is None or session == "":
        return None
    if not isinstance(session, str) or len(session) > MAX_SESSION_CHARS:
        raise BadQuestionError(f"session must be text of at most {MAX_SESSION_CHARS} characters")
    return f"api-{principal_of(request.scope)}-{session}"


async def read_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadQuestionError('the body must be JSON, e.g. {"question": "How many customers?"}'
                               ) from exc
    if not isinstance(body, dict):
        raise BadQuestionError('the body must be a JSON object, e.g. {"question": "..."}')
    return body


async def open_stream(
    tc: TableChat, metrics: Metrics, front: str, question: Any, history: Any,
    session: str | None, usage: Usage, *, tokens: bool = True,
) -> AsyncIterator[ev.Event]:
    """The question's events, metered. Bad input raises BadQuestionError here, before any
    response starts (and is not counted as a question). ``tokens=False`` for a caller that
    sends nothing before the answer is whole: the sentence is one model reply, not a stream."""
    raw = tc.stream(question, history, session=session, usage=usage, tokens=tokens)
    first = await anext(aiter(raw))

    async def chained() -> AsyncIterator[ev.Event]:
        yield first
        async for event in raw:
            yield event

    return metrics.meter(chained(), front, usage)


def sse(event: ev.Event) -> str:
    return f"event: {event.kind}\ndata: {dumps(event.to_dict())}\n\n"


def rest_router(tc: TableChat, metrics: Metrics) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    def healthz() -> JSONResponse:
        return JSONResponse(jsonable(tc.health()))

    @router.get("/metrics")
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=Metrics.CONTENT_TYPE)

    @router.post("/api/ask", response_model=None)
    async def ask(request: Request) -> Response:
        """Answer a question: the ``ask --json`` shape, or with ``Accept: text/event-stream``
        the typed events as Server-Sent Events (``event: <kind>``, ``data: <json>``)."""
        try:
            body = await read_body(request)
            question = body.get("question")
            history = body.get("history")
            if history is not None and not isinstance(history, list):
                raise BadQuestionError("history must be a list of messages")
            session = session_key(request, body.get("session"))
            usage = Usage()
            wants_sse = "text/event-stream" in request.headers.get("accept", "") \
                or body.get("stream") is True
            stream = await open_stream(tc, metrics, "api", question, history, session, usage,
                                       tokens=wants_sse)
        except BadQuestionError as exc:
            metrics.bad_request("api")
            return error(400, str(exc), type(exc).__name__)
        if wants_sse:
            async def events() -> AsyncIterator[str]:
                async for event in stream:
                    yield sse(event)

            return StreamingResponse(events(), media_type="text/event-stream",
                                     headers=SSE_HEADERS)
        answer = Answer(question=question if isinstance(question, str) else "")
        async for event in stream:
            answer.apply(event)
        data = answer.to_dict()
        data["error_type"] = answer.error_type
        data["usage"] = {"llm_calls": usage.llm_calls, "prompt_tokens": usage.prompt_tokens,
                         "completion_tokens": usage.completion_tokens}
        return JSONResponse(jsonable(data))

    @router.post("/api/upload", response_model=None)
    async def upload(request: Request, file: UploadFile = File(...),  # noqa: B008
                     session: str = Form(...)) -> Response:
        """Upload a CSV, Parquet or JSON file as a table of one API session."""
        try:
            key = session_key(request, session)
        except BadQuestionError as exc:
            return error(400, str(exc), type(exc).__name__)
        if key is None:
            return error(400, "session is required: uploads belong to one session",
                         "UploadError")
        limit = int(tc.settings.upload_max_mb * 1024 * 1024)
        data = await file.read(limit + 1)
        if len(data) > limit:
            metrics.upload("refused")
            return error(413, f"{file.filename} is larger than the upload limit of "
                         f"{tc.settings.upload_max_mb:g} MB", "UploadError")
        try:
            info = await _loop.in_thread(tc.upload, key, file.filename or "upload.csv", data)
        except UploadError as exc:
            metrics.upload("refused")
            return error(400, str(exc), "UploadError")
        metrics.upload("ok")
        return JSONResponse({
            "table": info.name, "rows": info.row_count, "session": session,
            "columns": [{"name": c.name, "type": c.type} for c in info.columns],
        })

    @router.delete("/api/sessions/{session}", status_code=204, response_model=None)
    def end_session(request: Request, session: str) -> Response:
        """Forget an API session's uploads."""
        try:
            key = session_key(request, session)
        except BadQuestionError as exc:
            return error(400, str(exc), type(exc).__name__)
        if key is not None:
            tc.end_session(key)
        return Response(status_code=204)

    @router.get("/api/schema", response_model=None)
    def schema(request: Request, session: str | None = None) -> Response:
        """Tables and columns (with descriptions and sample values) the session can query."""
        try:
            key = session_key(request, session)
        except BadQuestionError as exc:
            return error(400, str(exc), type(exc).__name__)
        snap = tc.snapshot(key)
        tables = tables_frame(snap).to_dict(orient="records")
        for t in tables:
            t["columns"] = columns_frame(snap, t["table"]).to_dict(orient="records")
        return JSONResponse(jsonable({"database": tc.database.name, "dialect": snap.dialect,
                                      "tables": tables}))

    return router

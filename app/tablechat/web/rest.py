"""The REST API: ``POST /api/ask`` (JSON or SSE), sessions and uploads, schema, health,
metrics.

Bodies are parsed with limits and typed (``bodies.py``); sessions are ids the server hands out
(``sessions.py``); every error is one line with no server path in it (``redact.scrub``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import math
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.sse import EventSourceResponse, format_sse_event
from starlette.datastructures import UploadFile

from .. import _loop
from .. import events as ev
from ..answer import Answer, Usage
from ..core import TableChat
from ..errors import BadQuestionError, UploadError
from ..redact import redact_url, scrub
from .auth import API_AUTH, principal_of
from .bodies import MAX_SESSION_CHARS, AskBody, BadBodyError, parse_json, validate
from .browse import columns_frame, tables_frame
from .health import HealthView
from .limits import BodyTooLargeError
from .metrics import Metrics
from .sessions import ApiSessions, SessionError

# what FastAPI's own SSE routes send: no caching, and no buffering in nginx
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
UPLOAD_FIELDS = 4  # a file and a session; a few spare for clients that add their own


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
    """tablechat's error reply for a message from the core: one line, no server path."""
    return JSONResponse({"error": scrub(message), "error_type": error_type}, status_code=status)


def refuse(exc: SessionError | BadBodyError) -> JSONResponse:
    """The reply for a request the web layer refused; its words are ours (they name routes,
    which :func:`error` would take for server paths)."""
    return JSONResponse({"error": str(exc), "error_type": type(exc).__name__},
                        status_code=exc.status)


def session_key(request: Request, sessions: ApiSessions, session: Any) -> str | None:
    """The core's key of the API session the request names (None: no session). Raises
    :class:`SessionError` for a session the caller was not given (or that expired)."""
    if session is None or session == "":
        return None
    if not isinstance(session, str) or len(session) > MAX_SESSION_CHARS:
        raise BadBodyError(f"session must be text of at most {MAX_SESSION_CHARS} characters")
    return sessions.use(principal_of(request.scope), session)


async def use_session(request: Request, sessions: ApiSessions, session: Any) -> str | None:
    """:func:`session_key` off the loop: the session lives in the store, and its uploads may
    have to be read into this process first."""
    if session is None or session == "":
        return None
    return await _loop.in_thread(session_key, request, sessions, session)


async def read_json(request: Request) -> Any:
    """The request's body as JSON, or :class:`BadBodyError` (see ``bodies.parse_json``)."""
    return parse_json(await request.body())


async def open_stream(
    tc: TableChat, metrics: Metrics, front: str, question: Any, history: Any,
    session: str | None, usage: Usage, *, tokens: bool = True,
) -> AsyncIterator[ev.Event]:
    """The question's events, metered and fit to leave the process (:func:`outward`). Bad
    input raises BadQuestionError here, before any response starts (and is not counted as a
    question). ``tokens=False`` for a caller that
    sends nothing before the answer is whole: the sentence is one model reply, not a stream."""
    raw = tc.stream(question, history, session=session, usage=usage, tokens=tokens)
    first = await anext(aiter(raw))

    url = tc.settings.llm_url

    async def chained() -> AsyncIterator[ev.Event]:
        yield outward(first, url)
        async for event in raw:
            yield outward(event, url)

    return metrics.meter(chained(), front, usage)


def outward(event: ev.Event, llm_url: str | None = None) -> ev.Event:
    """``event`` fit to leave the process: the LLM's URL (``llm_url``) shown without
    credentials wherever it appears (the fallback status and answer name it), and status and
    error texts scrubbed of credentials in URLs and of server paths (a DuckDB error may name
    its secrets directory). Answer texts are not scrubbed: a path there may be the data's."""
    def clean(text: str, *, scrubbed: bool) -> str:
        if llm_url and llm_url in text:
            text = text.replace(llm_url, redact_url(llm_url) or "")
        return scrub(text) if scrubbed else text

    if isinstance(event, ev.AnswerText):
        text = clean(event.text, scrubbed=False)
        return event if text == event.text else dataclasses.replace(event, text=text)
    if isinstance(event, ev.Status | ev.Error) and event.message:
        message = clean(event.message, scrubbed=True)
        return event if message == event.message else dataclasses.replace(event,
                                                                          message=message)
    return event


def sse(event: ev.Event) -> bytes:
    """One typed event as a Server-Sent Event (``event: <kind>``, ``data: <json>``), written
    by FastAPI's SSE encoder. Not through a ``ServerSentEvent`` model: building one per token
    cost 35 µs more per event (80 against 45 µs, measured here)."""
    return format_sse_event(event=event.kind, data_str=dumps(event.to_dict()))


def sse_response(chunks: AsyncIterator[bytes]) -> EventSourceResponse:
    """Encoded events (:func:`sse`, ``format_sse_event``) as FastAPI's ``text/event-stream``
    response.

    The routes return it rather than being FastAPI generator routes
    (``response_class=EventSourceResponse`` with ``yield``): each decides per request whether
    to stream (``Accept``, ``"stream": true``) or answer with JSON, and refuses bad input with
    a JSON 400 before any event, which a generator route cannot do."""
    return EventSourceResponse(chunks, headers=SSE_HEADERS)


def stream_doc(what: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI page's word that a route's 200 may also be an event stream."""
    return {200: {"description": what, "content": {"text/event-stream": {"schema": {
        "type": "string", "description": "Server-Sent Events (event: and data: lines)"}}}}}


def rest_router(tc: TableChat, metrics: Metrics, health: HealthView,
                sessions: ApiSessions) -> APIRouter:
    """The ``/api`` routes, ``/healthz`` and ``/metrics``."""
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> JSONResponse:
        """Up or down, for anyone: cached, at most one check in flight, nothing secret."""
        # 200 even when something is down: the deployments probe liveness here, and a
        # restart mends neither a database nor an LLM outage (deploy/k8s/app.yaml)
        return JSONResponse(await health.summary())

    @router.get("/api/health", dependencies=API_AUTH)
    async def health_detail() -> JSONResponse:
        """The last check in detail (behind auth when auth is on): database, LLM server (its
        URL without credentials), models, errors."""
        # which server process answered (``--workers N``: any of them may)
        return JSONResponse(jsonable({**await health.detail(), "process": os.getpid()}))

    @router.get("/metrics", dependencies=API_AUTH)
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=Metrics.CONTENT_TYPE)

    @router.post("/api/ask", response_model=None, dependencies=API_AUTH, responses=stream_doc(
        "The answer as JSON, or with Accept: text/event-stream (or \"stream\": true) its "
        "typed events (status, sql, table, chart, token, answer, error, done)."))
    async def ask(request: Request) -> Response:
        """Answer a question: the ``ask --json`` shape, or with ``Accept: text/event-stream``
        the typed events as Server-Sent Events (``event: <kind>``, ``data: <json>``)."""
        try:
            body: AskBody = validate(AskBody, await read_json(request))
            session = await use_session(request, sessions, body.session)
            usage = Usage()
            wants_sse = "text/event-stream" in request.headers.get("accept", "") \
                or body.stream is True
            stream = await open_stream(tc, metrics, "api", body.question, body.history,
                                       session, usage, tokens=wants_sse)
        except (SessionError, BadBodyError) as exc:
            metrics.bad_request("api")
            return refuse(exc)
        except BadQuestionError as exc:
            metrics.bad_request("api")
            return error(400, str(exc), type(exc).__name__)
        if wants_sse:
            async def events() -> AsyncIterator[bytes]:
                async for event in stream:
                    yield sse(event)

            return sse_response(events())
        answer = Answer(question=body.question or "")
        async for event in stream:
            answer.apply(event)
        data = answer.to_dict()
        data["error_type"] = answer.error_type
        data["usage"] = {"llm_calls": usage.llm_calls, "prompt_tokens": usage.prompt_tokens,
                         "completion_tokens": usage.completion_tokens}
        return JSONResponse(jsonable(data))

    @router.post("/api/sessions", status_code=201, response_model=None,
                 dependencies=API_AUTH)
    def new_session(request: Request) -> Response:
        """A new API session: its id (unguessable, bound to the caller) names it in
        ``/api/ask``, ``/api/upload``, ``/api/schema`` and ``DELETE /api/sessions/{id}``."""
        try:
            sid = sessions.create(principal_of(request.scope))
        except SessionError as exc:
            return refuse(exc)
        return JSONResponse({"session": sid, "idle_minutes": tc.settings.session_idle_minutes},
                            status_code=201)

    @router.post("/api/upload", response_model=None, dependencies=API_AUTH)
    async def upload(request: Request) -> Response:
        """Upload a CSV, Parquet or JSON file (multipart field ``file``) as a table of one API
        session (field ``session``; without it, a new session is created and returned)."""
        try:
            return await _upload(request)
        except (SessionError, BadBodyError) as exc:
            metrics.upload("refused")
            return refuse(exc)
        except UploadError as exc:
            metrics.upload("refused")
            return error(400, str(exc), "UploadError")

    async def _upload(request: Request) -> Response:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise BadBodyError("send the file as multipart/form-data (field file, and "
                               "session)")
        limit = int(tc.settings.upload_max_mb * 1024 * 1024)
        try:
            form = await request.form(max_files=1, max_fields=UPLOAD_FIELDS,
                                      max_part_size=limit)
        except BodyTooLargeError:
            raise  # the body limit answers 413 itself
        except Exception as exc:  # Starlette words a bad form as an HTTP 400; say it as ours
            reason = getattr(exc, "detail", None) or "the multipart body does not parse"
            raise BadBodyError(f"bad upload form: {reason}") from None
        try:
            file, session = form.get("file"), form.get("session")
            if not isinstance(file, UploadFile):
                raise BadBodyError("the form has no file (field file)")
            if session is not None and not isinstance(session, str):
                raise BadBodyError("session must be a text field")
            principal = principal_of(request.scope)
            sid: str = session if isinstance(session, str) and session \
                else await _loop.in_thread(sessions.create, principal)
            data = await file.read(limit + 1)
            if len(data) > limit:
                metrics.upload("refused")
                return error(413, f"{file.filename or 'the file'} is larger than the upload "
                             f"limit of {tc.settings.upload_max_mb:g} MB", "UploadError")
            name = file.filename or "upload.csv"
            # here, and through the shared directory in every other process
            info = await _loop.in_thread(sessions.upload, principal, sid, name, data)
        finally:
            await form.close()
        metrics.upload("ok")
        return JSONResponse({
            "table": info.name, "rows": info.row_count, "session": sid,
            "columns": [{"name": c.name, "type": c.type} for c in info.columns],
        })

    @router.delete("/api/sessions/{session}", status_code=204, response_model=None,
                   dependencies=API_AUTH)
    def end_session(request: Request, session: str) -> Response:
        """End an API session now: its uploads are dropped."""
        try:
            sessions.end(principal_of(request.scope), session)
        except SessionError as exc:
            return refuse(exc)
        return Response(status_code=204)

    @router.get("/api/schema", response_model=None, dependencies=API_AUTH)
    def schema(request: Request, session: str | None = None) -> Response:
        """Tables and columns (with descriptions and sample values) the session can query."""
        try:
            key = session_key(request, sessions, session)
        except (SessionError, BadBodyError) as exc:
            return refuse(exc)
        snap = tc.snapshot(key)
        tables = tables_frame(snap).to_dict(orient="records")
        for t in tables:
            t["columns"] = columns_frame(snap, t["table"]).to_dict(orient="records")
        return JSONResponse(jsonable({"database": tc.database.name, "dialect": snap.dialect,
                                      "tables": tables}))

    return router

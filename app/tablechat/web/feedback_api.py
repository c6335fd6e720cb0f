"""``POST /api/feedback``: a vote, a comment or a corrected SQL on an answer, over HTTP.

The lead mounts it beside the REST API, before the UI is mounted at ``/`` (a route added after
that mount is never reached): ``app.include_router(feedback_router(tc))``. The API
is stateless, so the body carries the answer back::

    {"question": "top customers", "sql": "SELECT ...", "engine": "llm",
     "good": false, "correct_sql": "SELECT ...", "comment": "net of discounts",
     "history": [{"role": "user", "content": "..."}], "session": "tab-1"}

201 ``{"id": 12, "verified": true}``; 400 with ``{"error", "error_type"}`` for a bad body; 503
when the store cannot be written. The principal is the caller the auth middleware recognised.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ..answer import Answer
from ..core import TableChat
from ..errors import BadQuestionError, ConfigurationError
from ..store import FeedbackError, StoreError
from .auth import principal_of
from .rest import error, read_body, session_key

ANONYMOUS = "anon"  # principal_of() when auth is off: nobody in particular


def _text(body: dict[str, Any], key: str, limit: int, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise BadQuestionError(f"{key!r} is required")
        return None
    if not isinstance(value, str):
        raise BadQuestionError(f"{key!r} must be text")
    if len(value) > limit:
        raise BadQuestionError(f"{key!r} is too long ({len(value)} characters; the limit is "
                               f"{limit})")
    return value


def feedback_router(tc: TableChat) -> APIRouter:
    """The ``POST /api/feedback`` route over ``tc``."""
    router = APIRouter()
    limit = tc.settings.feedback_max_chars

    @router.post("/api/feedback", status_code=201, response_model=None)
    async def feedback(request: Request) -> JSONResponse:
        try:
            body = await read_body(request)
            question = _text(body, "question", tc.settings.max_question_chars, required=True)
            sql = _text(body, "sql", max(limit, 100_000))
            engine = _text(body, "engine", 50)
            good = body.get("good")
            if good is not None and not isinstance(good, bool):
                raise BadQuestionError("'good' must be true, false or absent")
            history = body.get("history")
            if history is not None and not isinstance(history, list):
                raise BadQuestionError("'history' must be a list of messages")
            who = principal_of(request.scope)
            principal = None if who == ANONYMOUS else who
            answer = Answer(question=question or "", sql=sql, source_sql=sql,
                            engine=engine or "")
            correct = _text(body, "correct_sql", limit * 4)  # FeedbackError words the limit
            record = await run_in_threadpool(
                tc.feedback, answer, good=good, sql=correct,
                comment=_text(body, "comment", limit * 4), principal=principal,
                session=session_key(request, body.get("session")), history=history)
        except (BadQuestionError, FeedbackError) as exc:
            return error(400, str(exc), type(exc).__name__)
        except (StoreError, ConfigurationError) as exc:
            return error(503, f"feedback cannot be kept now: {exc}", type(exc).__name__)
        return JSONResponse({"id": record.id, "verified": record.verified}, status_code=201)

    return router

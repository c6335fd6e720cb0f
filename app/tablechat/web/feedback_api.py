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
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from ..answer import Answer
from ..core import TableChat
from ..errors import BadQuestionError, ConfigurationError
from ..store import FeedbackError, StoreError
from .auth import principal_of
from .bodies import MAX_HISTORY_TURNS, BadBodyError, validate
from .rest import error, read_json, refuse, use_session
from .sessions import ApiSessions, SessionError

ANONYMOUS = "anon"  # principal_of() when auth is off: nobody in particular


class FeedbackBody(BaseModel):
    """``POST /api/feedback``: the answer given back (the API is stateless) and the verdict.
    Text lengths past the settings' bounds are the core's to refuse (``FeedbackError``)."""

    model_config = ConfigDict(extra="ignore")

    question: StrictStr = Field(min_length=1)
    sql: StrictStr | None = None
    engine: StrictStr | None = Field(None, max_length=50)
    good: StrictBool | None = None
    correct_sql: StrictStr | None = None
    comment: StrictStr | None = None
    history: list[Any] | None = Field(None, max_length=MAX_HISTORY_TURNS)
    session: StrictStr | None = None


def _bounded(value: str | None, name: str, limit: int) -> str | None:
    if value is not None and len(value) > limit:
        raise BadQuestionError(f"{name!r} is too long ({len(value)} characters; the limit is "
                               f"{limit})")
    return value or None


def feedback_router(tc: TableChat, sessions: ApiSessions) -> APIRouter:
    """The ``POST /api/feedback`` route over ``tc``."""
    router = APIRouter()
    limit = tc.settings.feedback_max_chars

    @router.post("/api/feedback", status_code=201, response_model=None)
    async def feedback(request: Request) -> JSONResponse:
        try:
            body: FeedbackBody = validate(FeedbackBody, await read_json(request))
            session = await use_session(request, sessions, body.session)
            question = _bounded(body.question, "question", tc.settings.max_question_chars)
            sql = _bounded(body.sql, "sql", max(limit, 100_000))
            who = principal_of(request.scope)
            principal = None if who == ANONYMOUS else who
            answer = Answer(question=question or "", sql=sql, source_sql=sql,
                            engine=body.engine or "")
            record = await run_in_threadpool(
                tc.feedback, answer, good=body.good,
                sql=_bounded(body.correct_sql, "correct_sql", limit * 4),
                comment=_bounded(body.comment, "comment", limit * 4), principal=principal,
                session=session, history=body.history)
        except (BadBodyError, SessionError) as exc:
            return refuse(exc)
        except (BadQuestionError, FeedbackError) as exc:
            return error(400, str(exc), type(exc).__name__)
        except (StoreError, ConfigurationError) as exc:
            return error(503, f"feedback cannot be kept now: {exc}", type(exc).__name__)
        return JSONResponse({"id": record.id, "verified": record.verified}, status_code=201)

    return router

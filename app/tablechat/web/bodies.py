"""Request bodies of the REST and OpenAI-compatible routes: parsed with limits, typed with
pydantic, refused with a one-line reason (issue 11, class 11).

``request.json()`` turned hostile JSON into HTTP 500s: nesting deeper than the interpreter's
recursion limit (RecursionError), a 100,000-digit number (ValueError past Python's 4,300-digit
int limit) and a lone ``\\ud800`` surrogate (UnicodeEncodeError when the text was written
out). :func:`parse_json` refuses each with :class:`BadBodyError`; the models below then check
the shape, so a handler only ever sees well-typed values.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from ..errors import UserFacingError

MAX_DEPTH = 32  # a chat request needs 4 or 5 levels
MAX_NUMBER_CHARS = 100
MAX_SESSION_CHARS = 200
MAX_HISTORY_TURNS = 200
_SURROGATE = re.compile("[\ud800-\udfff]")


class BadBodyError(UserFacingError):
    """A request body that is not what the route takes; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class _NumberTooLong(ValueError):
    pass


def _number(kind: type) -> Any:
    def parse(text: str) -> Any:
        if len(text) > MAX_NUMBER_CHARS:
            raise _NumberTooLong
        return kind(text)
    return parse


def _constant(name: str) -> Any:
    raise BadBodyError(f"the JSON holds {name}, which is not JSON")


def parse_json(raw: bytes) -> Any:
    """``raw`` as JSON, or :class:`BadBodyError` saying in one line what is wrong with it."""
    if not raw.strip():
        raise BadBodyError("the body is empty: send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBodyError("the body is not UTF-8 text") from None
    try:
        value = json.loads(text, parse_int=_number(int), parse_float=_number(float),
                           parse_constant=_constant)
    except RecursionError:
        raise BadBodyError(f"the JSON is nested too deeply (at most {MAX_DEPTH} levels)"
                           ) from None
    except _NumberTooLong:
        raise BadBodyError(f"the JSON holds a number longer than {MAX_NUMBER_CHARS} "
                           "characters") from None
    except json.JSONDecodeError as exc:
        raise BadBodyError(f"the body is not valid JSON ({exc.msg} at line {exc.lineno}, "
                           f"column {exc.colno})") from None
    _check(value)
    return value


def _check(value: Any) -> None:
    """Depth and text of a parsed value, without recursion (it may be deep)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise BadBodyError("the JSON holds a lone UTF-16 surrogate (\\ud800-\\udfff), "
                                   "which is not text")
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise BadBodyError(f"the JSON is nested too deeply (at most {MAX_DEPTH} "
                                   "levels)")
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)


def one_line(exc: Any) -> str:
    """A pydantic (or FastAPI request) validation error in one line: where and what, never
    the value sent."""
    try:
        errors = exc.errors(include_url=False, include_input=False)
    except TypeError:  # FastAPI's RequestValidationError.errors() takes no options
        errors = exc.errors()
    if not errors:
        return "the body does not have the expected shape"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def validate(model: type[BaseModel], value: Any) -> Any:
    """``value`` as ``model``, or :class:`BadBodyError`."""
    if not isinstance(value, dict):
        raise BadBodyError("the body must be a JSON object")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise BadBodyError(one_line(exc)) from None


class AskBody(BaseModel):
    """``POST /api/ask``. The question's own checks (empty, too long) are the core's."""

    model_config = ConfigDict(extra="ignore")

    question: StrictStr | None = None
    history: list[Any] | None = Field(None, max_length=MAX_HISTORY_TURNS)
    session: StrictStr | None = Field(None, max_length=MAX_SESSION_CHARS)
    stream: StrictBool | None = None


class ChatBody(BaseModel):
    """``POST /v1/chat/completions``: what tablechat reads of OpenAI's request (the other
    fields OpenAI clients send are accepted and ignored)."""

    model_config = ConfigDict(extra="allow")

    messages: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_HISTORY_TURNS)
    model: StrictStr | None = Field(None, max_length=MAX_SESSION_CHARS)
    stream: StrictBool | None = None
    stream_options: dict[str, Any] | None = None
    # an end-user id to OpenAI clients, a session here only when it is one (openai_api.py)
    user: StrictStr | None = Field(None, max_length=1000)

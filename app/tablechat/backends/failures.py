"""What a failed call to the model means, from exception types, status codes and the error
codes servers send, never from the wording of a message."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ..errors import LLMUnavailableError

# error codes/types that say "the prompt does not fit": OpenAI's, llama.cpp's
CONTEXT_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error"})
# vLLM names the request field at fault in ``param``
CONTEXT_PARAMS = frozenset({"input_tokens", "max_tokens", "max_completion_tokens"})


def error_fields(exc: BaseException) -> dict[str, Any]:
    """The server's error object (``{"error": {...}}`` unwrapped) of an SDK status error."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    fields = dict(body) if isinstance(body, dict) else {}
    for name in ("code", "type", "param"):
        value = getattr(exc, name, None)
        if value is not None and name not in fields:
            fields[name] = value
    return fields


def _modules() -> list[Any]:
    """The openai SDK and its HTTP clients (openai 3 runs on httpx2; httpx for others)."""
    import importlib

    found = []
    for name in ("openai", "httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            continue
    return found


def _is(exc: BaseException, *names: str) -> bool:
    """Whether ``exc`` is an instance of any of these classes of the openai SDK or httpx."""
    for module in _modules():
        for name in names:
            kind = getattr(module, name, None)
            if isinstance(kind, type) and isinstance(exc, kind):
                return True
    return False


def dropped(exc: BaseException) -> bool:
    """Whether the server closed the connection in the middle of a reply (worth one more try:
    the SDK retries a request, never a stream it has handed over)."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if _is(seen, "RemoteProtocolError"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def failure_kind(exc: BaseException) -> str:
    """'timeout', 'connection', 'garbled', 'context', 'auth', 'model', 'rate_limit', 'server',
    'bad_request' or 'other'."""
    if isinstance(exc, LLMUnavailableError):
        kind = getattr(exc, "kind", None)
        if isinstance(kind, str):
            return kind
        return failure_kind(exc.__cause__) if exc.__cause__ is not None else "other"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError) or _is(
            exc, "APITimeoutError", "TimeoutException"):
        return "timeout"
    if isinstance(exc, ConnectionError) or _is(exc, "APIConnectionError", "ConnectError",
                                               "RemoteProtocolError", "ReadError"):
        return "connection"
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        fields = error_fields(exc)
        if status in (401, 403):
            return "auth"
        if status == 404:
            return "model"  # the chat endpoint exists; the model named does not
        if status == 429:
            return "rate_limit"
        if status >= 500:
            return "server"
        if status == 413 or fields.get("code") in CONTEXT_CODES \
                or fields.get("type") in CONTEXT_CODES or fields.get("param") in CONTEXT_PARAMS:
            return "context"
        return "bad_request"
    if isinstance(exc, json.JSONDecodeError | ValueError | UnicodeDecodeError) or _is(
            exc, "APIResponseValidationError", "DecodingError"):
        return "garbled"
    return "other"


def context_size(exc: BaseException) -> int | None:
    """The context size a context error names (llama.cpp sends ``n_ctx``), else None."""
    value = error_fields(exc).get("n_ctx")
    return value if isinstance(value, int) and value > 0 else None


__all__ = ["CONTEXT_CODES", "context_size", "dropped", "error_fields", "failure_kind"]

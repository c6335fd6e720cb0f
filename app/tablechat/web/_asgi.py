"""Small ASGI helpers shared by the middlewares (auth, limits): types, a JSON reply."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]


async def send_json(send: Any, status: int, body: dict[str, Any],
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A whole JSON response, straight on the ASGI ``send``."""
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
        *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


def error_body(path: str, message: str, error_type: str, code: str | None = None,
               oai_type: str = "invalid_request_error") -> dict[str, Any]:
    """The error shape of the route: OpenAI's under ``/v1``, tablechat's under ``/api`` and
    ``/metrics``, FastAPI's ``detail`` for the UI's."""
    if path.startswith("/v1/"):
        return {"error": {"message": message, "type": oai_type, "code": code, "param": None}}
    if path.startswith("/api/") or path in ("/metrics", "/healthz"):
        return {"error": message, "error_type": error_type}
    return {"detail": message}

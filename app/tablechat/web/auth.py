"""Optional authentication for the whole server.

- ``TABLECHAT_AUTH`` (``user:password`` pairs, comma-separated): the UI's login page (Gradio's
  auth). The API also takes these pairs as HTTP Basic credentials.
- ``TABLECHAT_API_KEYS`` (comma-separated tokens): ``Authorization: Bearer <token>`` for the
  API (``/api/*``, ``/v1/*``, ``/metrics``). A key also logs into the UI as a password.

When either is set, every route except ``/healthz`` (and the login page with its static
assets) answers 401 without credentials. Gradio checks its own cookie on most of its routes;
this middleware also closes the ones it leaves open (streams, cancel, heartbeat, ...).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any

from ..config import Settings
from ..errors import ConfigurationError

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]

OPEN_PATHS = ("/healthz",)
API_PREFIXES = ("/api/", "/v1/", "/metrics")
# what the login page itself needs before anyone has logged in
LOGIN_PATHS = ("/", "/login", "/login/", "/logout", "/favicon.ico", "/theme.css",
               "/robots.txt", "/manifest.json")
LOGIN_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon", "/gradio_api/assets/")
PRINCIPAL_KEY = "tablechat.principal"


def _same(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class AuthConfig:
    users: dict[str, str] = field(default_factory=dict)
    keys: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthConfig:
        users: dict[str, str] = {}
        for pair in (settings.auth or "").split(","):
            if not pair.strip():
                continue
            user, sep, password = pair.strip().partition(":")
            if not sep or not user or not password:
                raise ConfigurationError(
                    "TABLECHAT_AUTH must be user:password pairs separated by commas"
                )
            users[user] = password
        keys = tuple(k.strip() for k in (settings.api_keys or "").split(",") if k.strip())
        return cls(users, keys)

    @property
    def enabled(self) -> bool:
        return bool(self.users or self.keys)

    def login(self, username: str, password: str) -> bool:
        """Gradio's login form: a user's password, or an API key (any user name)."""
        expected = self.users.get(username)
        if expected is not None and _same(password, expected):
            return True
        return any(_same(password, key) for key in self.keys)

    def principal(self, authorization: str) -> str | None:
        """Who an Authorization header names (hashed key or user name), or None."""
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value:
            if any(_same(value, key) for key in self.keys):
                return "key-" + hashlib.sha256(value.encode()).hexdigest()[:12]
        elif scheme.lower() == "basic" and value:
            try:
                user, _, password = base64.b64decode(value).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            expected = self.users.get(user)
            if expected is not None and _same(password, expected):
                return "user-" + user
        return None


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


class AuthMiddleware:
    """ASGI middleware in front of everything (SSE-safe: it never touches bodies)."""

    def __init__(self, app: ASGIApp, auth: AuthConfig,
                 gradio_user: Callable[[dict[str, str]], str | None]) -> None:
        self.app = app
        self.auth = auth
        self.gradio_user = gradio_user

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not self.auth.enabled:
            scope.setdefault("state", {})[PRINCIPAL_KEY] = "anon"
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        headers = _headers(scope)
        if path in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        principal = self.auth.principal(headers.get("authorization", ""))
        is_api = path.startswith(API_PREFIXES) or path == "/metrics"
        if principal is None and not is_api:
            if path in LOGIN_PATHS or path.startswith(LOGIN_PREFIXES):
                await self.app(scope, receive, send)
                return
            user = self.gradio_user(_cookies(headers))
            principal = f"user-{user}" if user else None
        if principal is None:
            await _refuse(scope, send, path)
            return
        scope.setdefault("state", {})[PRINCIPAL_KEY] = principal
        await self.app(scope, receive, send)


def _cookies(headers: dict[str, str]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except CookieError:
        return {}
    return {k: m.value for k, m in jar.items()}


async def _refuse(scope: Scope, send: Any, path: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    message = "authentication required: send Authorization: Bearer <API key>"
    if path.startswith("/v1/"):
        body: dict[str, Any] = {"error": {"message": message, "type": "invalid_request_error",
                                          "code": "invalid_api_key", "param": None}}
    elif path.startswith("/api/") or path == "/metrics":
        body = {"error": message, "error_type": "Unauthorized"}
    else:
        body = {"detail": "Not authenticated"}
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
        (b"www-authenticate", b'Bearer realm="tablechat"')]})
    await send({"type": "http.response.body", "body": data})


def principal_of(scope: Scope) -> str:
    """The caller the middleware recognised (``anon`` when auth is off)."""
    state = scope.get("state") or {}
    return str(state.get(PRINCIPAL_KEY, "anon"))

"""Optional authentication for the whole server.

- ``TABLECHAT_AUTH`` (``user:password`` pairs, comma-separated): the UI's login page (Gradio's
  auth). The API also takes these pairs as HTTP Basic credentials.
- ``TABLECHAT_API_KEYS`` (comma-separated tokens): ``Authorization: Bearer <token>`` for the
  API (``/api/*``, ``/v1/*``, ``/metrics``). A key is not a UI password: it would make every
  user name a login, and a leaked key a UI session.

When either is set, every route except ``/healthz`` (and the login page with its static
assets) answers 401 without credentials. One ASGI middleware (:class:`AuthMiddleware`)
decides for every route, the reason being in its docstring; the API routes also declare
FastAPI's security schemes (:func:`api_caller`), so the OpenAPI page documents them and a
route served without the middleware refuses everyone.

Failed logins and failed API credentials count against the client's address and the user name
(``TABLECHAT_AUTH_MAX_FAILURES`` per ``TABLECHAT_AUTH_FAILURE_WINDOW`` seconds); past that the
client gets 429 with ``Retry-After`` before its credentials are even looked at (issue 11,
class 8: 300 wrong logins went through in 0.5 s). Secrets are compared as SHA-256 digests with
``hmac.compare_digest``, every configured one every time, so neither the length of a secret
nor which one matched, nor whether a user exists, shows in the time taken.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Annotated, Any

from fastapi import HTTPException, Security
from fastapi.params import Depends
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import Request

from ..config import Settings
from ..errors import ConfigurationError
from ._asgi import ASGIApp, Scope, error_body, send_json
from .limits import FailureLimiter

OPEN_PATHS = ("/healthz",)
API_PREFIXES = ("/api/", "/v1/", "/metrics")
# what the login page itself needs before anyone has logged in
LOGIN_PATHS = ("/", "/login", "/login/", "/logout", "/favicon.ico", "/theme.css",
               "/robots.txt", "/manifest.json")
LOGIN_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon", "/gradio_api/assets/")
PRINCIPAL_KEY = "tablechat.principal"


LOGIN_ROUTES = ("/login", "/login/")
MAX_LOGIN_BODY = 16 * 1024
MAX_USER_CHARS = 256


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def _same(a: str, b: str) -> bool:
    """Equal, in time independent of where they differ and of their lengths."""
    return hmac.compare_digest(_digest(a), _digest(b))


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
        """Gradio's login form: a configured user and that user's password. Never an API key.
        An unknown user costs the same comparison as a known one."""
        expected = self.users.get(username)
        matched = _same(password, expected if expected is not None else "\0unknown user")
        return matched and expected is not None

    def key_matches(self, token: str) -> bool:
        """``token`` is one of the API keys (each compared, whichever matches)."""
        found = False
        for key in self.keys:
            found |= _same(token, key)
        return found

    def principal(self, authorization: str) -> str | None:
        """Who an Authorization header names (hashed key or user name), or None."""
        scheme, value = get_authorization_scheme_param(authorization.strip())
        if scheme.lower() == "bearer" and value:
            if self.key_matches(value):
                return "key-" + _digest(value).hex()[:12]
        elif scheme.lower() == "basic" and value:
            user, password = basic_credentials(value)
            if user is not None and self.login(user, password):
                return "user-" + user
        return None


def basic_credentials(value: str) -> tuple[str | None, str]:
    """(user, password) of HTTP Basic credentials; (None, "") when they do not decode.

    Not FastAPI's ``HTTPBasic``: it decodes ASCII only, so a TABLECHAT_AUTH password with
    any other letter could never log in over the API (RFC 7617 sends UTF-8), and it accepts
    characters outside base64."""
    try:
        user, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None, ""
    return user, password


def claimed_user(authorization: str) -> str | None:
    """The user name an Authorization header claims (Basic only), right or wrong."""
    scheme, value = get_authorization_scheme_param(authorization.strip())
    return basic_credentials(value)[0] if scheme.lower() == "basic" else None


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


class AuthMiddleware:
    """ASGI middleware in front of everything (SSE-safe: it never touches response bodies).
    Failed credentials count in ``limiter``; the login form's outcome too.

    Why a middleware and not only FastAPI's security dependencies (``api_caller``): a
    dependency runs for the routes FastAPI itself serves, after the middlewares. It never runs
    for the Gradio app mounted at ``/`` (config, queue, upload, file, cancel, heartbeat and
    the websocket: Gradio checks its login cookie on some of these and leaves others open),
    nor for FastAPI's own ``/api/docs`` and ``/api/openapi.json``; and the body-size limit
    would read an anonymous caller's body before it. So this is the one place that decides,
    for every path; the Gradio-specific part is the login cookie (``gradio_user``) and the
    login form (limited like API credentials)."""

    def __init__(self, app: ASGIApp, auth: AuthConfig,
                 gradio_user: Callable[[dict[str, str]], str | None],
                 limiter: FailureLimiter | None = None,
                 on_refusal: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.auth = auth
        self.gradio_user = gradio_user
        self.limiter = limiter or FailureLimiter(10, 300.0)
        self.on_refusal = on_refusal or (lambda reason: None)

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
        if path in LOGIN_ROUTES and scope.get("method") == "POST":
            await self._login(scope, receive, send)
            return
        authorization = headers.get("authorization", "")
        keys = _keys(scope, claimed_user(authorization))
        if authorization.strip():
            wait = self.limiter.retry_after(*keys)
            if wait is not None:
                self.on_refusal("limited")
                await _too_many(scope, send, path, wait)
                return
        principal = self.auth.principal(authorization)
        if principal is None and authorization.strip():
            self.limiter.fail(*keys)
            self.on_refusal("wrong")
        is_api = path.startswith(API_PREFIXES) or path == "/metrics"
        if principal is None and not is_api:
            if path in LOGIN_PATHS or path.startswith(LOGIN_PREFIXES):
                await self.app(scope, receive, send)
                return
            user = self.gradio_user(_cookies(headers))
            principal = f"user-{user}" if user else None
        if principal is None:
            if not authorization.strip():
                self.on_refusal("missing")
            await _refuse(scope, send, path)
            return
        scope.setdefault("state", {})[PRINCIPAL_KEY] = principal
        await self.app(scope, receive, send)

    async def _login(self, scope: Scope, receive: Any, send: Any) -> None:
        """Gradio's login form, limited: read the (small) form for the user name, refuse a
        blocked address or user with 429, else hand the same bytes to Gradio and count its
        answer (200: logged in, 400: wrong)."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = bool(message.get("more_body"))
            if size > MAX_LOGIN_BODY:
                await send_json(send, 413, {"detail": "the login form is too large"})
                return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        user = await _form_user(scope, replay)
        replayed = False
        keys = _keys(scope, user)
        wait = self.limiter.retry_after(*keys)
        if wait is not None:
            self.on_refusal("limited")
            await _too_many(scope, send, "/login", wait)
            return
        status = 0

        async def watched(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, replay, watched)
        if status == 200 and user:
            self.limiter.forget(keys[-1])
        elif 400 <= status < 500:
            self.limiter.fail(*keys)
            self.on_refusal("wrong")


async def _form_user(scope: Scope, receive: Any) -> str | None:
    """The user name of a login form (URL-encoded or multipart), as Gradio reads it."""
    try:
        async with Request(scope, receive).form(max_files=0, max_fields=8) as form:
            value = form.get("username")
    except Exception:  # a form that does not parse names no user; Gradio says why
        return None
    return value.strip() if isinstance(value, str) else None


def _keys(scope: Scope, user: str | None) -> tuple[str, ...]:
    client = scope.get("client")
    address = f"ip:{client[0]}" if client else "ip:?"
    # a user name is as long as the client likes: remember a bounded form of it
    return (address, f"user:{user[:MAX_USER_CHARS]}") if user else (address,)


async def _too_many(scope: Scope, send: Any, path: str, wait: int) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    message = f"too many failed attempts: try again in {wait} s"
    body = error_body(path, message, "TooManyFailures", "rate_limit_exceeded",
                      oai_type="rate_limit_error")
    await send_json(send, 429, body, [(b"retry-after", str(wait).encode())])


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
    body = error_body(path, message, "Unauthorized", "invalid_api_key")
    if "detail" in body:
        body = {"detail": "Not authenticated"}
    await send_json(send, 401, body, [(b"www-authenticate", b'Bearer realm="tablechat"')])


class _Basic(HTTPBasic):
    """FastAPI's HTTP Basic scheme, declared for the OpenAPI page. It refuses nothing itself
    (``HTTPBasic`` answers 401 to a malformed header even with ``auto_error=False``, also when
    auth is off): the middleware has checked the credentials already."""

    async def __call__(self, request: Request) -> HTTPBasicCredentials | None:  # type: ignore[override]
        try:
            return await super().__call__(request)
        except HTTPException:
            return None


API_KEY_SCHEME = HTTPBearer(
    auto_error=False, scheme_name="apiKey",
    description="Authorization: Bearer <one of TABLECHAT_API_KEYS>")
USER_SCHEME = _Basic(
    auto_error=False, scheme_name="user", realm="tablechat",
    description="HTTP Basic with a user:password pair of TABLECHAT_AUTH")


async def api_caller(
    request: Request,
    _key: Annotated[HTTPAuthorizationCredentials | None, Security(API_KEY_SCHEME)],
    _user: Annotated[HTTPBasicCredentials | None, Security(USER_SCHEME)],
) -> str:
    """The caller of an API route, as :class:`AuthMiddleware` recognised them. Declares the
    API's credentials (bearer key, HTTP Basic) to OpenAPI; refuses every request the
    middleware has not seen, so a router served without it fails closed."""
    state = request.scope.get("state") or {}
    if PRINCIPAL_KEY not in state:
        raise HTTPException(401, "authentication required",
                            headers={"WWW-Authenticate": 'Bearer realm="tablechat"'})
    return str(state[PRINCIPAL_KEY])


# ``dependencies=`` of every API route (not /healthz, which is open to all)
API_AUTH: list[Depends] = [Security(api_caller)]


def principal_of(scope: Scope) -> str:
    """The caller the middleware recognised (``anon`` when auth is off)."""
    state = scope.get("state") or {}
    return str(state.get(PRINCIPAL_KEY, "anon"))

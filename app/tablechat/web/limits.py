"""Limits in front of the routes: failed credentials per client and per user (issue 11,
class 8), request body size (class 11), and a penalty box for clients whose requests keep
being refused (:class:`PenaltyBox`).

All are plain ASGI pieces that never buffer a response, so Server-Sent Events pass through.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from ..errors import UserFacingError
from ._asgi import ASGIApp, Scope, error_body, send_json

MAX_TRACKED = 10_000  # keys (addresses, user names) remembered; the oldest go first
# A refused body is still read, and dropped, up to this many bytes and seconds before the 413
# is sent: a server that answers and closes while the client is still sending leaves unread
# bytes, the kernel resets the connection, and the client never sees the 413 (bench_attack:
# a 5 MB chat message got a connection error, not its one-line reason). Past these bounds
# the connection is closed anyway.
DRAIN_MAX_BYTES = 16 * 1024 * 1024
DRAIN_SECONDS = 5.0


class FailureLimiter:
    """At most ``max_failures`` failures per key within ``window`` seconds; a key at the limit
    is refused until its oldest failure is older than the window. Keys are client addresses
    (``ip:...``) and user names (``user:...``)."""

    def __init__(self, max_failures: int, window: float,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_TRACKED) -> None:
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, *keys: str) -> int | None:
        """Whole seconds until every key may try again, or None when none is blocked."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                if times is not None and len(times) >= self.max_failures:
                    wait = max(wait, times[0] + self.window - now)
        return max(1, math.ceil(wait)) if wait > 0 else None

    def count(self, key: str) -> int:
        """Failures of ``key`` within the window."""
        with self._lock:
            times = self._recent(key, self.clock())
            return len(times) if times is not None else 0

    def fail(self, *keys: str) -> None:
        """Count one failure against each key."""
        now = self.clock()
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                if times is None:
                    times = self._failures[key] = deque(maxlen=self.max_failures)
                times.append(now)
                self._failures.move_to_end(key)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def forget(self, key: str) -> None:
        """A success clears the key's failures (only a user's: an address may hold many)."""
        with self._lock:
            self._failures.pop(key, None)


class BodyTooLargeError(UserFacingError):
    """A request body over the route's limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than the limit of {limit // 1024:,} KB")
        self.limit = limit


class BodyLimitMiddleware:
    """Refuse request bodies over ``limit_for(path)`` bytes with 413: at once when
    Content-Length says so, else as soon as the bytes read pass the limit. Paths whose limit
    is None (the UI's: Gradio limits its own uploads) pass untouched."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int | None]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        limit = self.limit_for(scope.get("path", "")) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_json(send, 400, error_body(
                        path, "Content-Length is not a number", "BadBodyError"))
                    return
                if declared > limit:
                    if declared <= DRAIN_MAX_BYTES:
                        await _drain(receive)
                    await _too_large(send, path, limit)
                    return
        seen = 0
        started = False

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLargeError(limit)
            return message

        async def watched(message: Any) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLargeError:
            if started:
                raise
            await _drain(receive)
            await _too_large(send, path, limit)


async def _drain(receive: Any) -> None:
    """Read and drop what is left of a request body, within the drain bounds."""
    seen = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            while seen <= DRAIN_MAX_BYTES:
                message = await receive()
                if message.get("type") != "http.request":
                    return
                seen += len(message.get("body", b""))
                if not message.get("more_body"):
                    return


async def _too_large(send: Any, path: str, limit: int) -> None:
    message = str(BodyTooLargeError(limit))
    await send_json(send, 413, error_body(path, message, "BodyTooLargeError"),
                    [(b"connection", b"close")])


# What a refusal is: the client sent something the server will not take (a malformed or
# oversized body, wrong credentials, a file or URL it may not name). Not 404 (a browser asks
# for icons that are not there), not 429 (the server's own capacity limits, and the box's).
REFUSALS = frozenset({400, 401, 403, 405, 411, 413, 414, 415, 422, 431})
MAX_HELD = 4  # a boxed client's 429s held at once; past this, answered at once and closed


class PenaltyBox:
    """ASGI middleware, outermost: clients whose requests keep being refused are slowed, then
    refused, before any other work (auth, reading the body, parsing JSON, Gradio's queue).

    Refusals (:data:`REFUSALS`) count against the client's address for ``limiter.window``
    seconds. With ``r`` of them counted, each new request waits ``delay * r / max`` seconds
    before it is handled (``max`` is ``limiter.max_failures``): nothing for a client that is
    never refused, a tenth of ``delay`` after one refusal in ten. At ``max`` the client is in
    the box: every request gets 429 with ``Retry-After`` (until the oldest counted refusal
    is ``window`` seconds old), held ``delay`` seconds before it is sent. A client that
    ignores ``Retry-After`` and asks again at once would otherwise turn a cheap refusal into
    a flood of them, and a client's own CPU counts too on a shared machine. At most
    :data:`MAX_HELD` requests per address wait at once; past that they get 429 at once and
    their connection is closed. Successes and the box's own 429s never count, so a client
    that stops being refused is let out when its refusals age out.
    """

    def __init__(self, app: ASGIApp, limiter: FailureLimiter, delay: float = 1.0) -> None:
        self.app = app
        self.limiter = limiter
        self.delay = delay
        self._held: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = f"ip:{client[0]}" if client else "ip:?"
        wait = self.limiter.retry_after(key)
        if wait is not None:
            held = await self._hold(key, self.delay)
            await _refuse_boxed(scope, receive, send, wait, close=not held)
            return
        refused = self.limiter.count(key)
        if refused and self.delay > 0 and not await self._hold(
                key, self.delay * refused / self.limiter.max_failures):
            await _refuse_boxed(scope, receive, send, 1, close=True)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def watched(message: Any) -> None:
            if message.get("type") == "http.response.start" and message["status"] in REFUSALS:
                self.limiter.fail(key)
            await send(message)

        await self.app(scope, receive, watched)

    async def _hold(self, key: str, seconds: float) -> bool:
        """Wait ``seconds`` (False at once when the address has MAX_HELD waiting already)."""
        held = self._held.get(key, 0)
        if held >= MAX_HELD:
            return False
        self._held[key] = held + 1
        try:
            await asyncio.sleep(seconds)
        finally:
            left = self._held[key] - 1
            if left:
                self._held[key] = left
            else:
                del self._held[key]
        return True


async def _refuse_boxed(scope: Scope, receive: Any, send: Any, wait: int, close: bool) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    headers = [(b"retry-after", str(wait).encode())]
    if close or _declared_length(scope) > DRAIN_MAX_BYTES:
        headers.append((b"connection", b"close"))
    else:
        await _drain(receive)  # the client hears its 429, not a reset
    path = scope.get("path", "")
    message = f"too many refused requests from this client: try again in {wait} s"
    await send_json(send, 429, error_body(path, message, "TooManyRefusals",
                                          "rate_limit_exceeded", oai_type="rate_limit_error"),
                    headers)


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0

"""Limits in front of the routes: failed credentials per client and per user (issue 11,
class 8), and request body size (class 11).

Both are plain ASGI pieces that never buffer a response, so Server-Sent Events pass through.
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

"""API sessions: ids the server hands out, bound to their caller, dropped when idle (issue 11,
class 12).

A session named by the client (``session=alice``) was shared by everyone who guessed the name:
with auth off, client B read and deleted client A's upload. Now ``POST /api/sessions`` (or an
upload without a session) returns an unguessable id; a request naming an id it was not given,
one of another caller, or one that expired gets a 404. A session unused for
``TABLECHAT_SESSION_IDLE_MINUTES`` is ended through ``TableChat.end_session``, which drops its
uploads, by :meth:`ApiSessions.sweep` (run by the server every so often and on every new
session).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from .. import _loop
from ..core import TableChat
from ..errors import UserFacingError

SWEEP_EVERY_SECONDS = 60.0


class SessionError(UserFacingError):
    """A session the caller may not use (unknown, another caller's, expired), or too many."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class _Session:
    principal: str
    used: float


class ApiSessions:
    """The open API sessions of one server."""

    def __init__(self, tc: TableChat, *, idle_seconds: float, max_sessions: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.tc = tc
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self.clock = clock
        self._open: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._open)

    @staticmethod
    def key(sid: str) -> str:
        """The core's session key for an API session id (never a UI session's)."""
        return f"api-{sid}"

    def create(self, principal: str) -> str:
        """A new session for ``principal``; raises :class:`SessionError` (429) when full."""
        self.sweep()
        with self._lock:
            if len(self._open) >= self.max_sessions:
                raise SessionError(f"too many open sessions ({self.max_sessions}); end one "
                                   "with DELETE /api/sessions/{id} or wait", 429)
            sid = secrets.token_urlsafe(24)
            self._open[sid] = _Session(principal, self.clock())
        return sid

    def use(self, principal: str, sid: str) -> str:
        """The core's key for ``sid``, marking it used. Raises :class:`SessionError` (404) for
        a session that does not exist, expired, or belongs to someone else: all alike, so a
        caller learns nothing about other callers' sessions."""
        with self._lock:
            found = self._open.get(sid)
            now = self.clock()
            if found is None or found.principal != principal or self._expired(found, now):
                raise SessionError("unknown or expired session: create one with "
                                   "POST /api/sessions", 404)
            found.used = now
        return self.key(sid)

    def end(self, principal: str, sid: str) -> None:
        """End the session now (its uploads dropped); 404 as :meth:`use` when not the
        caller's."""
        self.use(principal, sid)
        with self._lock:
            self._open.pop(sid, None)
        self.tc.end_session(self.key(sid))

    def _expired(self, session: _Session, now: float) -> bool:
        return now - session.used > self.idle_seconds

    def sweep(self) -> int:
        """End every session idle for longer than the limit; how many ended."""
        now = self.clock()
        with self._lock:
            gone = [sid for sid, s in self._open.items() if self._expired(s, now)]
            for sid in gone:
                del self._open[sid]
        for sid in gone:
            self.tc.end_session(self.key(sid))
        return len(gone)

    def end_all(self) -> None:
        """End every session (the server is stopping)."""
        with self._lock:
            gone = list(self._open)
            self._open.clear()
        for sid in gone:
            with contextlib.suppress(Exception):  # a closed database has nothing left anyway
                self.tc.end_session(self.key(sid))

class Sweepable(Protocol):
    """Sessions that end when idle: :class:`ApiSessions`, ``ui_sessions.UiSessions``."""

    idle_seconds: float

    def sweep(self) -> int: ...

    def end_all(self) -> None: ...


async def sweeper(sessions: Sweepable) -> None:
    """Sweep ``sessions`` now and then until cancelled (the app's lifespan runs it)."""
    every = min(SWEEP_EVERY_SECONDS, max(sessions.idle_seconds / 4, 1.0))
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(Exception):  # one failed drop must not stop the sweeps
            await _loop.in_thread(sessions.sweep)  # closing cursors may wait: not on the loop


@contextlib.asynccontextmanager
async def sweeping(*groups: Sweepable) -> AsyncIterator[None]:
    """Run :func:`sweeper` for each group of sessions for as long as the block runs, then end
    every session."""
    tasks = [asyncio.create_task(sweeper(g), name="tablechat-session-sweeper") for g in groups]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for group in groups:
            with contextlib.suppress(Exception):  # the others still end
                await _loop.in_thread(group.end_all)

"""UI sessions: every Gradio session that ran an event, dropped when idle (issue 11).

A browser tab ends its session when its heartbeat stream closes (Gradio's ``unload`` event). A
client that never opens that stream (``gradio_client`` with its heartbeat gone, a script
calling ``/gradio_api/call/<fn>``, a tab killed with its network) never unloads: its DuckDB
cursor, its uploaded temporary tables, its result files and Gradio's state for it stayed for
the life of the process. 200 such scripted sessions with one small upload each kept 200
cursors open.

:func:`track` wraps the app's ``Blocks.process_api``, the one call every event of every route
(queue, ``/call/``, ``/run/``) goes through with its ``session_hash`` resolved: the session is
marked used when an event starts and when it ends. :meth:`UiSessions.sweep` ends every session
without an event in flight that has been idle for ``TABLECHAT_UI_SESSION_IDLE_MINUTES``: the
core's session (its uploads), its result files, and Gradio's state for it. The server's
lifespan runs the sweeps (``sessions.sweeping``), as it does for the API sessions.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core import TableChat
from .files import ResultFiles


@dataclass(slots=True)
class _Seen:
    used: float
    running: int = 0  # events in flight: a session running one is never idle


class UiSessions:
    """The Gradio sessions of one server, by ``session_hash``."""

    def __init__(self, tc: TableChat, files: ResultFiles, *, idle_seconds: float,
                 key: Callable[[str], str], clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.tc = tc
        self.files = files
        self.idle_seconds = idle_seconds
        self.key = key  # session_hash -> the core's session name (the UI's ``session_of``)
        self.clock = clock
        self.blocks: Any = None  # Gradio's state for a session is dropped when set
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def started(self, session_hash: str) -> None:
        """An event of ``session_hash`` starts."""
        with self._lock:
            seen = self._seen.setdefault(session_hash, _Seen(self.clock()))
            seen.used = self.clock()
            seen.running += 1

    def finished(self, session_hash: str) -> None:
        """An event of ``session_hash`` ended (however it ended)."""
        with self._lock:
            seen = self._seen.get(session_hash)
            if seen is not None:
                seen.used = self.clock()
                seen.running = max(seen.running - 1, 0)

    def forget(self, session_hash: str) -> None:
        """The session ended on its own (its tab's ``unload`` event ended it)."""
        with self._lock:
            seen = self._seen.get(session_hash)
            if seen is not None and not seen.running:
                del self._seen[session_hash]

    def sweep(self) -> int:
        """End every session idle for longer than the limit; how many ended."""
        now = self.clock()
        with self._lock:
            gone = [h for h, s in self._seen.items()
                    if not s.running and now - s.used > self.idle_seconds]
            for h in gone:
                del self._seen[h]
        for h in gone:
            self._end(h)
        return len(gone)

    def end_all(self) -> None:
        """End every session (the server is stopping)."""
        with self._lock:
            gone = list(self._seen)
            self._seen.clear()
        for h in gone:
            with contextlib.suppress(Exception):  # a closed database has nothing left anyway
                self._end(h)

    def release_all(self) -> None:
        """The server process is stopping: a tab's session lives in this process only (Gradio
        keeps its queue and state here), so it ends."""
        self.end_all()

    def _end(self, session_hash: str) -> None:
        session = self.key(session_hash)
        self.tc.end_session(session)
        self.files.end(session)
        holder = getattr(self.blocks, "state_holder", None)
        if holder is not None:
            _drop_state(holder, session_hash)


def _drop_state(holder: Any, session_hash: str) -> None:
    """Gradio's state for a session (its chat, its result): what Gradio itself drops an hour
    after a tab closes, but never for a session that did not say it closed."""
    with contextlib.suppress(Exception):  # Gradio's internals: best effort, never fatal
        holder.delete_state(session_hash)
        with holder.lock:
            holder.session_data.pop(session_hash, None)
            holder.time_last_used.pop(session_hash, None)


def _is_unload(blocks: Any, block_fn: Any) -> bool:
    """Whether an event is the ``unload`` a tab sends when its heartbeat stream closes."""
    fn = blocks.fns.get(block_fn) if isinstance(block_fn, int) else block_fn
    return any(t[1] == "unload" for t in getattr(fn, "targets", ()))


def track(blocks: Any, sessions: UiSessions) -> None:
    """Mark a session used on every event ``blocks`` runs (see the module's docstring)."""
    process_api = blocks.process_api
    sessions.blocks = blocks

    @functools.wraps(process_api)
    async def tracked(*args: Any, **kwargs: Any) -> Any:
        session_hash = kwargs.get("session_hash")
        if not isinstance(session_hash, str) or not session_hash:
            return await process_api(*args, **kwargs)
        sessions.started(session_hash)
        try:
            return await process_api(*args, **kwargs)
        finally:
            sessions.finished(session_hash)
            if _is_unload(blocks, kwargs.get("block_fn", args[0] if args else None)):
                sessions.forget(session_hash)  # the UI's unload handler ended it

    blocks.process_api = tracked

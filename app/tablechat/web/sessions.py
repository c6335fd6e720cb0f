"""API sessions: ids the server hands out, bound to their caller, dropped when idle (issue 11,
class 12), kept where every server process reaches them (issue 15).

A session named by the client (``session=alice``) was shared by everyone who guessed the name:
with auth off, client B read and deleted client A's upload. Now ``POST /api/sessions`` (or an
upload without a session) returns an unguessable id; a request naming an id it was not given,
one of another caller, or one that expired gets a 404. A session unused for
``TABLECHAT_SESSION_IDLE_MINUTES`` is ended by :meth:`ApiSessions.sweep` (run by the server
every so often and on every new session).

Any process may serve any request of a session (``tablechat serve --workers N``, replicas):

- the session's owner, last use and uploads are a row of the store (``TABLECHAT_STORE``,
  ``sessions`` table, id ``api-<id>``);
- an uploaded file is kept in the shared directory (``TABLECHAT_SHARED_DIR``) and named in
  that row; a process that serves the session and has not read it yet (or an older upload of
  the same table) reads it again (``tc.upload``) before the request goes on;
- a process drops its own copy of a session's tables once the row is gone (ended or expired
  by whichever process swept it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import secrets
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

from .. import _loop
from ..core import TableChat
from ..errors import UploadError, UserFacingError
from ..store import SessionInfo, Store

SWEEP_EVERY_SECONDS = 60.0
PREFIX = "api-"  # the store's id of an API session: PREFIX + the id the caller holds
UPLOAD = "upload:"  # a session's data key for one uploaded table: UPLOAD + table name
# a session's last use is written to the store at most this often (a share of the idle limit):
# every request would otherwise be a write
TOUCH_SHARE = 0.05


class SessionError(UserFacingError):
    """A session the caller may not use (unknown, another caller's, expired), or too many."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ApiSessions:
    """The API sessions every process of a deployment shares (the store and a directory)."""

    def __init__(self, tc: TableChat, *, store: Store, shared_dir: Path, idle_seconds: float,
                 max_sessions: int, clock: Callable[[], float] = time.time) -> None:
        self.tc = tc
        self.store = store
        self.files_dir = shared_dir / "uploads"
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self.clock = clock  # wall-clock seconds: every process compares the same times
        self._loaded: dict[str, dict[str, int]] = {}  # core key -> table -> upload seq here
        self._lock = threading.Lock()  # one re-read of a session's uploads at a time
        # called with the core's key of every session this process ends (its exports go)
        self.on_end: list[Callable[[str], None]] = []

    def __len__(self) -> int:
        return len(self.store.sessions(PREFIX))

    @staticmethod
    def key(sid: str) -> str:
        """The core's session key for an API session id (never a UI session's)."""
        return f"api-{sid}"

    def create(self, principal: str) -> str:
        """A new session for ``principal``; raises :class:`SessionError` (429) when full
        (counted over every process: approximate when many are created at once)."""
        self.sweep()
        if len(self) >= self.max_sessions:
            raise SessionError(f"too many open sessions ({self.max_sessions}); end one "
                               "with DELETE /api/sessions/{id} or wait", 429)
        sid = secrets.token_urlsafe(24)
        self.store.touch_session(PREFIX + sid, principal=principal,
                                 data={"used": self.clock()})
        return sid

    def use(self, principal: str, sid: str) -> str:
        """The core's key for ``sid``, marking it used, with the session's uploads read in
        this process. Raises :class:`SessionError` (404) for a session that does not exist,
        expired, or belongs to someone else: all alike, so a caller learns nothing about
        other callers' sessions. Blocking (the store, maybe a file): call it in a thread."""
        info = self._check(principal, sid)
        now = self.clock()
        if now - float(info.data.get("used", 0)) > self.idle_seconds * TOUCH_SHARE:
            self.store.touch_session(PREFIX + sid, data={"used": now})
        key = self.key(sid)
        self._read_uploads(key, sid, info)
        return key

    def _check(self, principal: str, sid: str) -> SessionInfo:
        info = self.store.session(PREFIX + sid) if sid else None
        if info is None or info.principal != principal or self._expired(info, self.clock()):
            raise SessionError("unknown or expired session: create one with "
                               "POST /api/sessions", 404)
        return info

    def _expired(self, info: SessionInfo, now: float) -> bool:
        return now - float(info.data.get("used", 0)) > self.idle_seconds

    # -- uploads ----------------------------------------------------------------------------
    def _folder(self, sid: str) -> Path:
        return self.files_dir / hashlib.sha256(sid.encode()).hexdigest()[:32]

    def upload(self, principal: str, sid: str, filename: str, data: bytes) -> Any:
        """Make ``data`` a table of the session, here and (through the shared directory) in
        every process; returns its ``TableInfo``. Raises :class:`SessionError` as :meth:`use`
        and ``UploadError`` for a file the core refuses. Blocking: call it in a thread."""
        key = self.use(principal, sid)
        info = self.tc.upload(key, filename, data)  # refused files go no further
        folder = self._folder(sid)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{uuid.uuid4().hex}{_suffix(filename)}"
        path.write_bytes(data)  # before the store names it: nobody reads a missing file
        seq = time.time_ns()
        entry = UPLOAD + info.name
        old = self.store.session(PREFIX + sid)
        self.store.touch_session(PREFIX + sid, data={entry: {
            "filename": filename, "file": path.name, "seq": seq}})
        with self._lock:
            self._loaded.setdefault(key, {})[info.name] = seq
        previous = (old.data.get(entry) if old is not None else None) or {}
        if previous.get("file") and previous["file"] != path.name:
            (folder / str(previous["file"])).unlink(missing_ok=True)  # replaced
        return info

    def _read_uploads(self, key: str, sid: str, info: SessionInfo) -> None:
        """Register every upload of the session this process has not read yet."""
        wanted = {k.removeprefix(UPLOAD): v for k, v in info.data.items()
                  if k.startswith(UPLOAD) and isinstance(v, dict)}
        if not wanted:
            return
        with self._lock:
            have = self._loaded.setdefault(key, {})
            for table, meta in sorted(wanted.items(), key=lambda kv: kv[1].get("seq", 0)):
                if have.get(table) == meta.get("seq"):
                    continue
                path = self._folder(sid) / Path(str(meta.get("file", ""))).name
                try:
                    self.tc.upload(key, str(meta.get("filename", table)), path)
                except UploadError:  # replaced meanwhile (its file deleted): the next use
                    continue
                have[table] = int(meta.get("seq", 0))

    # -- ending ------------------------------------------------------------------------------
    def end(self, principal: str, sid: str) -> None:
        """End the session now, in every process (its uploads dropped); 404 as :meth:`use`
        when not the caller's."""
        self._check(principal, sid)
        self._end(sid)

    def _end(self, sid: str) -> None:
        self.store.end_session(PREFIX + sid)
        shutil.rmtree(self._folder(sid), ignore_errors=True)
        for hook in self.on_end:
            hook(self.key(sid))
        self._release(self.key(sid))

    def _release(self, key: str) -> None:
        """Drop this process's copy of a session's tables."""
        with self._lock:
            self._loaded.pop(key, None)
        self.tc.end_session(key)

    def sweep(self) -> int:
        """End every session idle for longer than the limit, and drop this process's tables
        of sessions another process ended; how many sessions this sweep ended."""
        now = self.clock()
        rows = self.store.sessions(PREFIX)
        gone = [r.id.removeprefix(PREFIX) for r in rows if self._expired(r, now)]
        for sid in gone:
            self._end(sid)
        alive = {self.key(r.id.removeprefix(PREFIX)) for r in rows} - {self.key(s) for s in gone}
        with self._lock:
            stale = [k for k in self._loaded if k not in alive]
        for key in stale:
            self._release(key)
        return len(gone)

    def release_all(self) -> None:
        """Drop this process's copy of every session (it is stopping; the sessions live on
        in the store for the other processes)."""
        with self._lock:
            keys = list(self._loaded)
        for key in keys:
            with contextlib.suppress(Exception):  # a closed database has nothing left anyway
                self._release(key)

    def end_all(self) -> None:
        """End every API session of the deployment, in the store and here."""
        for row in self.store.sessions(PREFIX):
            with contextlib.suppress(Exception):
                self._end(row.id.removeprefix(PREFIX))
        self.release_all()


def _suffix(filename: str) -> str:
    """The file's extension, as the reader needs it (nothing else of the name is kept)."""
    suffix = Path(filename).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


class Sweepable(Protocol):
    """Sessions that end when idle: :class:`ApiSessions`, ``ui_sessions.UiSessions``."""

    idle_seconds: float

    def sweep(self) -> int: ...

    def release_all(self) -> None: ...


async def sweeper(sessions: Sweepable) -> None:
    """Sweep ``sessions`` now and then until cancelled (the app's lifespan runs it)."""
    every = min(SWEEP_EVERY_SECONDS, max(sessions.idle_seconds / 4, 1.0))
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(Exception):  # one failed drop must not stop the sweeps
            await _loop.in_thread(sessions.sweep)  # closing cursors may wait: not on the loop


@contextlib.asynccontextmanager
async def sweeping(*groups: Sweepable) -> AsyncIterator[None]:
    """Run :func:`sweeper` for each group of sessions for as long as the block runs, then
    release what this process holds of them."""
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
                await _loop.in_thread(group.release_all)

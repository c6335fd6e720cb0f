"""The server (``tablechat serve``): one FastAPI app with the Gradio UI mounted at ``/``, the
REST API under ``/api``, the OpenAI-compatible API under ``/v1``, ``/healthz`` and
``/metrics``; optional auth in front of all of it.

:func:`serve` hands the app to ``uvicorn.run``: uvicorn owns the main thread, the signals
and, with ``--workers N``, the worker processes (each builds its app from the environment's
settings, :func:`app_from_env`). The loop uvicorn runs on becomes tablechat's loop
(``tablechat._loop.adopt``), the loop every question's pipeline runs on, so a question's events
never cross threads between the pipeline and the HTTP response. Database work still runs in
threads (``tablechat._loop.in_thread``), and Gradio runs its synchronous handlers in its own
worker threads. :class:`BackgroundServer` serves an app on tablechat's background loop from
another thread (tests, embedding), without touching signals.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gradio as gr
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Mount

from .. import _loop
from ..core import TableChat
from ..redact import scrub
from ..store import open_store
from ._asgi import error_body
from .auth import AuthConfig, AuthMiddleware
from .bodies import one_line
from .exports_api import exports_router
from .feedback_api import feedback_router
from .files import ResultFiles, shared_dir
from .gradio_guard import GradioGuard, secure_mount
from .health import HealthView
from .heap import settle
from .limits import BodyLimitMiddleware, FailureLimiter, PenaltyBox
from .metrics import Metrics, prepare_multiprocess, process_exited
from .openai_api import openai_router
from .rest import rest_router
from .sessions import ApiSessions, sweeping
from .ui import CSS, build_ui, session_of
from .ui_sessions import UiSessions, track
from .ui_tokens import share_logins

UPLOAD_SLACK_MB = 1.0  # gradio refuses far larger uploads itself; ours says why for the rest
# on shutdown, requests still open (an answer being streamed, a UI event) get this long to
# finish before their connections are closed
GRACEFUL_SHUTDOWN_SECONDS = 3.0
# Gradio's queue looks for work every 1 ms (and for progress every 10 ms) on Linux: ~1,100
# wake-ups a second, ~6 % of a core when idle, on the loop every question runs on. 20 ms (and
# 100 ms) is still instant to a person.
QUEUE_POLL_SECONDS = 0.02
PROGRESS_POLL_SECONDS = 0.1
# BackgroundServer.wait looks at its server this often
POLL_SECONDS = 0.25
# a served app waits this long for its warm-up (schema, engine) before settling its heap
WARM_UP_SECONDS = 60.0
GRADIO_BODY_FACTOR = 8  # a Gradio event body may be this many times TABLECHAT_MAX_BODY_KB


def create_app(tc: TableChat, *, settle_heap: bool = False) -> FastAPI:
    """The whole server as an ASGI app. ``app.state.metrics`` holds its metrics.
    ``settle_heap``: before it serves, wait for the warm-up and keep the start-up heap out
    of later garbage collections (``heap.settle``; for a process that only serves, as
    :func:`serve`)."""
    from .. import __version__

    settings = tc.settings
    auth = AuthConfig.from_settings(settings)
    metrics = Metrics()
    health = HealthView(tc, settings.health_ttl)
    sessions = ApiSessions(tc, store=open_store(settings=settings),
                           shared_dir=shared_dir(settings),
                           idle_seconds=settings.session_idle_minutes * 60,
                           max_sessions=settings.max_api_sessions)
    limiter = FailureLimiter(settings.auth_max_failures, settings.auth_failure_window)
    files = ResultFiles.from_settings(tc.settings)
    exports = ResultFiles.exports(settings)
    sessions.on_end.append(exports.end)  # an ended session's exports go with it
    # tabs that never unload end when idle: their uploads, files and state with them
    ui_sessions = UiSessions(tc, files, idle_seconds=settings.ui_session_idle_minutes * 60,
                             key=lambda h: session_of(gr.Request(session_hash=h)))
    warm_up = threading.Thread(target=_warm_up, args=(tc,), name="tablechat-warm-up",
                               daemon=True)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        _adopt_running_loop()  # uvicorn's loop runs the questions too (no-op when it already is)
        health.start()
        if settle_heap:  # before uvicorn listens: no request waits on the collection
            await _loop.in_thread(warm_up.join, WARM_UP_SECONDS)
            settle()
        watcher = asyncio.create_task(_end_streams_on_exit(app))
        async with sweeping(sessions, ui_sessions):
            yield
        watcher.cancel()
        process_exited(os.getpid())  # its live gauges leave the multiprocess sums

    app = FastAPI(title="tablechat", version=__version__, docs_url="/api/docs",
                  redoc_url=None, openapi_url="/api/openapi.json", lifespan=lifespan)
    app.state.metrics = metrics
    app.state.tablechat = tc
    app.state.health = health
    app.state.sessions = sessions
    app.state.ui_sessions = ui_sessions
    app.state.auth_limiter = limiter
    app.state.end_streams = []
    _one_line_errors(app)
    app.include_router(rest_router(tc, metrics, health, sessions))
    app.include_router(openai_router(tc, metrics, sessions))
    app.include_router(feedback_router(tc, sessions))
    app.include_router(exports_router(tc, sessions, exports))
    gradio_user = _mount_ui(app, tc, auth, metrics, files, ui_sessions) if settings.ui \
        else _no_user

    json_limit = settings.max_body_kb * 1024
    upload_limit = int((settings.upload_max_mb + UPLOAD_SLACK_MB) * 1024 * 1024)

    def body_limit(path: str) -> int | None:
        if path in ("/api/upload", "/gradio_api/upload"):
            return upload_limit
        if path.startswith("/gradio_api/"):
            # an event carries the whole chat history the browser holds: room for a long one
            return GRADIO_BODY_FACTOR * json_limit
        return json_limit if path.startswith(("/api/", "/v1/")) else None

    # added last, so it runs first: credentials before anything reads a body
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit)
    app.add_middleware(AuthMiddleware, auth=auth, gradio_user=gradio_user, limiter=limiter,
                       on_refusal=metrics.auth_refused)
    # outermost: a client whose requests keep being refused is refused before any work
    penalty = FailureLimiter(settings.penalty_refusals or 1, settings.penalty_window)
    app.state.penalty_limiter = penalty
    if settings.penalty_refusals:
        app.add_middleware(PenaltyBox, limiter=penalty, delay=settings.penalty_delay)
    warm_up.start()
    return app


def _mount_ui(app: FastAPI, tc: TableChat, auth: AuthConfig, metrics: Metrics,
              files: ResultFiles, ui_sessions: UiSessions) -> Callable[[dict[str, str]],
                                                                      str | None]:
    """Mount the Gradio UI at ``/``; returns how to read a logged-in user from cookies."""
    blocks = build_ui(tc, metrics, files)
    track(blocks, ui_sessions)  # every event marks its session used
    _calm_queue(blocks)
    max_mb = tc.settings.upload_max_mb + UPLOAD_SLACK_MB
    gr.mount_gradio_app(
        app, blocks, path="/",
        auth=auth.login if auth.enabled else None,
        auth_message="Log in with your tablechat user name and password."
        if auth.enabled else None,
        max_file_size=int(max_mb * 1024 * 1024),
        footer_links=[], run_history=False, ssr_mode=False, mcp_server=False,
        enable_monitoring=False, pwa=False, css=CSS,
        # Gradio never serves these, whatever an event or a /file= request names
        blocked_paths=_blocked_paths(tc),
    )
    # mounted, never launched: without this Gradio's allowed-path check is skipped and any
    # event copies any server file into its cache (issue 11, class 1)
    secure_mount(blocks)
    # added before auth, so it runs after it: anonymous requests are refused by auth first
    app.add_middleware(GradioGuard, after_upload=files.sweep)
    gradio_app = next(r.app for r in app.routes if isinstance(r, Mount))
    # logins made by any process are valid in every process (issue 15)
    share_logins(gradio_app, open_store(settings=tc.settings),
                 max_age=tc.settings.login_hours * 3600)
    # a browser tab's heartbeat stream only ends when Gradio's stop event is set
    stop_event = getattr(gradio_app, "stop_event", None)
    app.state.end_streams = [stop_event.set] if stop_event is not None else []

    def gradio_user(cookies: dict[str, str]) -> str | None:
        cookie_id = getattr(gradio_app, "cookie_id", "")
        tokens: Mapping[str, str] = getattr(gradio_app, "tokens", {})
        for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
            token = cookies.get(name)
            if token:
                user = tokens.get(token)
                if user is not None:
                    return user
        return None

    return gradio_user


async def _end_streams_on_exit(app: FastAPI) -> None:
    """End the app's never-ending streams (``app.state.end_streams``: a tab's heartbeat) as
    soon as the uvicorn serving it starts to shut down, rather than after its graceful timeout
    (a cancelled stream logs a traceback). uvicorn handles the signals; its handler, a method
    of its ``Server``, says which server that is."""
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    if not isinstance(server, uvicorn.Server):
        return  # not uvicorn's main thread (BackgroundServer ends them itself)
    while not server.should_exit:
        await asyncio.sleep(POLL_SECONDS)
    for end in app.state.end_streams:
        end()


def _no_user(_cookies: dict[str, str]) -> str | None:
    return None


def _blocked_paths(tc: TableChat) -> list[str]:
    """The database file (and DuckDB's WAL beside it), and the system's secrets."""
    paths = ["/proc", "/sys", "/etc"]
    db_path = getattr(tc.database, "path", None)
    if isinstance(db_path, Path):
        db = db_path.resolve()
        paths += [str(db), f"{db}.wal"]
    return paths


def _one_line_errors(app: FastAPI) -> None:
    """FastAPI's own refusals (a query parameter of the wrong type, a body that does not
    parse) as one line in the route's error shape, never a list echoing the input."""

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        message = one_line(exc) if isinstance(exc, RequestValidationError) else "invalid request"
        return JSONResponse(error_body(request.url.path, scrub(message), "BadBodyError"),
                            status_code=400)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        headers = getattr(exc, "headers", None)
        return JSONResponse(error_body(request.url.path, scrub(str(detail)), "HTTPError"),
                            status_code=status, headers=headers)

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)


def _calm_queue(blocks: gr.Blocks) -> None:
    queue = getattr(blocks, "_queue", None)
    for name, seconds in (("sleep_when_free", QUEUE_POLL_SECONDS),
                          ("progress_update_sleep_when_free", PROGRESS_POLL_SECONDS)):
        current = getattr(queue, name, None)
        if isinstance(current, int | float):
            setattr(queue, name, max(current, seconds))


def _warm_up(tc: TableChat) -> None:
    """Build the schema and the engine now, so the first question is not the slow one."""
    with contextlib.suppress(Exception):
        tc.snapshot()
        _ = tc.engine_name


class ServerStartError(RuntimeError):
    """uvicorn could not start: the address is taken, or the app's startup failed (logged)."""


class _Server(uvicorn.Server):
    """uvicorn, ending the app's never-ending streams (``app.state.end_streams``, callables)
    when shutdown begins, so it need not wait out the graceful timeout for them."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state = getattr(self.config.app, "state", None)
        for end in getattr(state, "end_streams", ()):
            end()
        await super().shutdown(sockets)


class BackgroundServer:
    """uvicorn serving an ASGI app on tablechat's background loop, started and stopped from
    any other thread."""

    def __init__(self, app: Any, *, host: str, port: int, **uvicorn_options: Any) -> None:
        uvicorn_options.setdefault("log_level", "info")
        uvicorn_options.setdefault("timeout_graceful_shutdown", GRACEFUL_SHUTDOWN_SECONDS)
        self.config = uvicorn.Config(app, host=host, port=port, lifespan="on", **uvicorn_options)
        self.server = _Server(self.config)
        self._future: concurrent.futures.Future[None] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return _loop.background_loop()

    @property
    def started(self) -> bool:
        """Listening (after the app's startup)."""
        return bool(self.server.started)

    def start(self) -> concurrent.futures.Future[None]:
        """Start serving; the future is done when the server has stopped (or failed to
        start: then it holds a :class:`ServerStartError`)."""
        if self._future is None:
            self._future = _loop.submit(self._serve())
        return self._future

    async def _serve(self) -> None:
        try:
            await self.server.serve()  # off the main thread: uvicorn installs no signal handlers
        except SystemExit as exc:  # uvicorn exits on a failed startup (port taken, lifespan)
            # a SystemExit escaping a task would stop the background loop itself; and the
            # app's startup may have run (Gradio's queue): shut it down, the loop lives on
            lifespan = getattr(self.server, "lifespan", None)
            if lifespan is not None and not getattr(lifespan, "should_exit", True):
                with contextlib.suppress(Exception):
                    await lifespan.shutdown()
            raise ServerStartError(f"the server did not start (exit code {exc.code})") from None

    def request_exit(self, sig: int | None = None) -> None:
        """Shut down gracefully; asked again after an interrupt, stop waiting for open
        connections (uvicorn's own Ctrl-C behaviour)."""
        if self.server.should_exit and sig == signal.SIGINT:
            self.server.force_exit = True
        self.server.should_exit = True

    def wait(self, timeout: float | None = None) -> None:
        """Until the server has stopped; raises what stopped it if that was an error, and
        ``TimeoutError`` after ``timeout`` seconds. Never from the background loop itself."""
        if self._future is None:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise RuntimeError("waiting for the server on its own loop would block it")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = POLL_SECONDS if deadline is None else min(POLL_SECONDS,
                                                             deadline - time.monotonic())
            try:
                self._future.result(max(left, 0.0))
                return
            except concurrent.futures.TimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError("the server did not stop in time") from None

    def stop(self, timeout: float | None = 30.0) -> None:
        self.request_exit()
        self.wait(timeout)


APP_FACTORY = "tablechat.web.server:app_from_env"


def app_from_env() -> FastAPI:
    """The app of one server process, built from the environment's settings (``TABLECHAT_*``,
    the one settings table): what each process of ``tablechat serve --workers N`` runs.
    uvicorn calls it in the process, on its running loop, which becomes tablechat's loop."""
    from ..api import connect

    _adopt_running_loop()
    return create_app(connect(), settle_heap=True)


def _adopt_running_loop() -> None:
    with contextlib.suppress(RuntimeError):  # no loop running: the background loop serves
        _loop.adopt(asyncio.get_running_loop())


def serve(tc: TableChat | None = None, *, host: str | None = None, port: int | None = None,
          workers: int = 1, app_factory: str = APP_FACTORY, **uvicorn_options: Any) -> None:
    """Serve until interrupted, with uvicorn's own process manager and signal handling
    (Ctrl-C and SIGTERM shut it down gracefully).

    With ``tc``, that object is served in this process (``workers`` must be 1). Without it,
    each of ``workers`` processes builds its app with ``app_factory`` (an import string of a
    function returning the app; default :func:`app_from_env`, from the environment's
    settings), without the web UI when there are several. Raises ``SystemExit`` when it
    cannot start (e.g. the port is taken)."""
    from ..config import load_settings

    settings = tc.settings if tc is not None else load_settings()
    uvicorn_options.setdefault("log_level", "info")
    uvicorn_options.setdefault("timeout_graceful_shutdown", GRACEFUL_SHUTDOWN_SECONDS)
    where: dict[str, Any] = {"host": host or settings.host, "port": port or settings.port}
    if tc is not None:
        if workers != 1:
            raise ValueError("several workers build their own app: pass no TableChat")
        uvicorn.run(create_app(tc, settle_heap=True), lifespan="on", **where, **uvicorn_options)
        return
    if workers > 1:  # Gradio keeps a tab's queue and state in one process (docs/web.md)
        os.environ["TABLECHAT_UI"] = "false"
    with tempfile.TemporaryDirectory(prefix="tablechat-metrics-") as metrics_dir:
        if workers > 1:  # every worker's metrics in one registry
            prepare_multiprocess(Path(metrics_dir))
        uvicorn.run(app_factory, factory=True, workers=workers, lifespan="on", **where,
                    **uvicorn_options)

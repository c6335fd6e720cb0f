"""The server (``tablechat serve``): one FastAPI app with the Gradio UI mounted at ``/``, the
REST API under ``/api``, the OpenAI-compatible API under ``/v1``, ``/healthz`` and
``/metrics``; optional auth in front of all of it."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import gradio as gr
from fastapi import FastAPI
from starlette.routing import Mount

from ..core import TableChat
from .auth import AuthConfig, AuthMiddleware
from .metrics import Metrics
from .openai_api import openai_router
from .rest import rest_router
from .ui import CSS, build_ui

UPLOAD_SLACK_MB = 1.0  # gradio refuses far larger uploads itself; ours says why for the rest


def create_app(tc: TableChat) -> FastAPI:
    """The whole server as an ASGI app. ``app.state.metrics`` holds its metrics."""
    from .. import __version__

    auth = AuthConfig.from_settings(tc.settings)
    metrics = Metrics()
    app = FastAPI(title="tablechat", version=__version__, docs_url="/api/docs",
                  redoc_url=None, openapi_url="/api/openapi.json")
    app.state.metrics = metrics
    app.state.tablechat = tc
    app.include_router(rest_router(tc, metrics))
    app.include_router(openai_router(tc, metrics))
    blocks = build_ui(tc, metrics)
    max_mb = tc.settings.upload_max_mb + UPLOAD_SLACK_MB
    gr.mount_gradio_app(
        app, blocks, path="/",
        auth=auth.login if auth.enabled else None,
        auth_message="Log in with your tablechat user name and password (or an API key as "
        "the password)." if auth.enabled else None,
        max_file_size=int(max_mb * 1024 * 1024),
        footer_links=[], run_history=False, ssr_mode=False, mcp_server=False,
        enable_monitoring=False, pwa=False, css=CSS,
    )
    gradio_app = next(r.app for r in app.routes if isinstance(r, Mount))

    def gradio_user(cookies: dict[str, str]) -> str | None:
        cookie_id = getattr(gradio_app, "cookie_id", "")
        tokens: dict[str, str] = getattr(gradio_app, "tokens", {})
        for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
            token = cookies.get(name)
            if token and token in tokens:
                return tokens[token]
        return None

    app.add_middleware(AuthMiddleware, auth=auth, gradio_user=gradio_user)
    threading.Thread(target=_warm_up, args=(tc,), name="tablechat-warm-up", daemon=True).start()
    return app


def _warm_up(tc: TableChat) -> None:
    """Build the schema and the engine now, so the first question is not the slow one."""
    with contextlib.suppress(Exception):
        tc.snapshot()
        _ = tc.engine_name


def serve(tc: TableChat, *, host: str | None = None, port: int | None = None,
          **uvicorn_options: Any) -> None:
    """Serve until interrupted (one process: sessions and uploads live in it)."""
    import uvicorn

    uvicorn.run(create_app(tc), host=host or tc.settings.host, port=port or tc.settings.port,
                log_level=uvicorn_options.pop("log_level", "info"), **uvicorn_options)

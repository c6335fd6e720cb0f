"""The FastAPI server: the Gradio UI mounted at / and the API beside it."""

from __future__ import annotations

from typing import Any

import gradio as gr
from fastapi import FastAPI

from ..core import TableChat
from .ui import build_ui


def create_app(tc: TableChat) -> FastAPI:
    app = FastAPI(title="tablechat", version="0.1.0")

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return tc.health()

    return gr.mount_gradio_app(app, build_ui(tc), path="/")


def serve(tc: TableChat, *, host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    app = create_app(tc)
    uvicorn.run(app, host=host or tc.settings.host, port=port or tc.settings.port,
                log_level="info")

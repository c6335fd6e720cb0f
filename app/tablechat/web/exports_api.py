"""CSV exports over the API: ``POST /api/export`` writes a query's whole result to a file in
the shared directory, ``GET /api/exports/{id}`` fetches it, from any server process.

A file belongs to the API session it was made in (or, without one, to the caller): fetching it
needs the same session (or caller) and its id, 128 random bits. Files are kept under the UI's
disk budgets (``TABLECHAT_UI_SESSION_DISK_MB`` per session, ``TABLECHAT_UI_DISK_MB`` for all,
``TABLECHAT_UI_FILE_MAX_AGE``), in ``exports/`` of ``TABLECHAT_SHARED_DIR``.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from .. import _loop
from ..core import TableChat
from ..errors import TableChatError
from .auth import principal_of
from .bodies import MAX_SESSION_CHARS, BadBodyError, validate
from .files import ResultFiles
from .rest import error, read_json, refuse, use_session
from .sessions import ApiSessions, SessionError

_FILE_ID = re.compile(r"[0-9a-f]{32}")


class ExportBody(BaseModel):
    """``POST /api/export``."""

    model_config = ConfigDict(extra="ignore")

    sql: StrictStr = Field(min_length=1, max_length=100_000)
    session: StrictStr | None = Field(None, max_length=MAX_SESSION_CHARS)


def _owner(request: Request, key: str | None) -> str:
    """Whose folder: the session's, else the caller's."""
    return key or f"caller-{principal_of(request.scope)}"


def exports_router(tc: TableChat, sessions: ApiSessions, files: ResultFiles) -> APIRouter:
    """The export routes over ``tc``, with files kept by ``files`` (a shared folder)."""
    router = APIRouter()

    @router.post("/api/export", response_model=None)
    async def export(request: Request) -> Response:
        """Run ``sql`` (through the guard, with the session's uploads) and keep its whole
        result, up to ``TABLECHAT_EXPORT_MAX_ROWS`` rows, as a CSV file to fetch."""
        try:
            body: ExportBody = validate(ExportBody, await read_json(request))
            key = await use_session(request, sessions, body.session)
        except (SessionError, BadBodyError) as exc:
            return refuse(exc)
        owner = _owner(request, key)
        path = files.new_path(owner)

        def write() -> object:
            with files.writing(owner) as room:  # the disk budget, while it writes
                done = tc.export_csv(body.sql, path, session=key, max_bytes=room)
            files.admit(owner, path)
            return done

        try:
            done = await _loop.in_thread(write)
        except TableChatError as exc:
            return error(400, str(exc), type(exc).__name__)
        file_id = path.stem.removeprefix("result-")
        query = f"?session={body.session}" if body.session else ""
        return JSONResponse({"file": file_id, "url": f"/api/exports/{file_id}{query}",
                             "rows": getattr(done, "rows", 0),
                             "truncated": getattr(done, "truncated", False)})

    @router.get("/api/exports/{file_id}", response_model=None)
    async def fetch(request: Request, file_id: str, session: str | None = None) -> Response:
        """A file ``POST /api/export`` wrote, for the session (or caller) it was made for."""
        try:
            key = await use_session(request, sessions, session)
        except (SessionError, BadBodyError) as exc:
            return refuse(exc)
        path = files.folder(_owner(request, key)) / f"result-{file_id}.csv"
        if not _FILE_ID.fullmatch(file_id) or not path.is_file():
            return error(404, "no such export (expired, over the disk budget, or not yours): "
                         "export again", "NotFound")
        return FileResponse(path, media_type="text/csv", filename="result.csv")

    return router

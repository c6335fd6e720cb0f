"""What any client may ask of the mounted Gradio app, narrowed to what the UI itself needs.

Every Gradio event is a public endpoint (``/gradio_api/call/<fn>``, ``/gradio_api/queue/join``
...) that takes any JSON, and Gradio copies every ``FileData`` it finds in an event's inputs
into its cache before any handler runs, whatever the component (a Textbox or a Dropdown as
much as a File). Two gaps follow (issue 11, class 1):

- a ``path`` naming any server file (``/proc/self/environ``, the database): Gradio's own check
  refuses it only once ``blocks.has_launched`` is true, which ``mount_gradio_app`` never sets;
  :func:`secure_mount` sets it, so Gradio's check applies (only files in its upload folder);
- a ``path`` or a ``/gradio_api/file=`` target that is a URL: Gradio fetches it itself (public
  addresses only, but still a request the visitor chose), and no Gradio setting turns that
  off. :class:`GradioGuard`, one ASGI middleware, refuses both before Gradio sees them, and
  refuses local paths outside the upload folder too, so they get a clear 400 of their own.

It also answers ``/gradio_api/deep_link`` with 404: the UI has no deep-link button, and the
route writes a session's whole state to disk on every call.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import anyio.to_thread
from gradio.utils import get_upload_folder

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# the routes that serve a path or URL named in the request's own path
_FILE_ROUTE = re.compile(r"/gradio_api/(?:file=|file/|proxy=)(.*)$", re.S)
_SCHEME = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.\-]*:|\s*//")
_DEEP_LINK = re.compile(r"/gradio_api/deep_link/?$")
_UPLOAD = re.compile(r"/gradio_api/upload/?$")


def upload_folder() -> Path:
    """Gradio's upload and cache folder (``GRADIO_TEMP_DIR``), resolved."""
    return Path(get_upload_folder()).resolve()


def inside_upload_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a local file path inside Gradio's upload folder (symlinks and
    ``..`` resolved), i.e. a file some client uploaded, not one the server already had."""
    text = os.fspath(path)
    if not text or _SCHEME.match(text):
        return False
    try:
        resolved = Path(text).resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return resolved.is_relative_to(upload_folder())


def foreign_file(data: Any) -> str | None:
    """The first ``FileData`` path in a JSON value that is not an uploaded file, or None.
    Walks without recursion: the body may be nested as deep as the client likes."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            meta = item.get("meta")
            path = item.get("path")
            # the same test as gradio_client.utils.is_file_obj_with_meta
            if (isinstance(meta, dict) and meta.get("_type") == "gradio.FileData"
                    and isinstance(path, str) and not inside_upload_folder(path)):
                return path
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


class GradioGuard:
    """ASGI middleware in front of the Gradio mount (see the module's docstring)."""

    def __init__(self, app: ASGIApp, after_upload: Callable[[], None] | None = None) -> None:
        self.app = app
        # run (in a worker thread) after each upload request: the disk budget's sweep
        self.after_upload = after_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "/gradio_api/" not in scope["path"]:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        target = _FILE_ROUTE.search(path)
        if target is not None and (path[target.start():].startswith("/gradio_api/proxy=")
                                   or _SCHEME.match(target.group(1))):
            await _refuse(send, 403, "this server fetches no URL for a client")
            return
        if _DEEP_LINK.search(path):
            await _refuse(send, 404, "deep links are off")
            return
        if scope["method"] == "POST" and _UPLOAD.search(path) and self.after_upload:
            sweep = self.after_upload

            async def send_after_sweep(message: Message) -> None:
                # the files are written before the response's last part: sweep, then send
                # it, so the client sees the budget already kept
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    await anyio.to_thread.run_sync(sweep)
                await send(message)

            await self.app(scope, receive, send_after_sweep)
            return
        if scope["method"] != "POST" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        body, replay = await _read_body(receive)
        try:
            found = foreign_file(json.loads(body)) if body else None
        except (ValueError, RecursionError):
            found = None  # not JSON: Gradio answers 422 itself
        if found is not None:
            await _refuse(send, 400, "a file in a request must be one uploaded to this server")
            return
        await self.app(scope, replay, send)


def _is_json(scope: Scope) -> bool:
    """Anything but a form may be read as JSON by some route: look at it."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return not value.lower().startswith((b"multipart/", b"application/x-www-form"))
    return True


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a ``receive`` that hands it to the app once more."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left
            return b"", receive
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


async def _refuse(send: Send, status: int, reason: str) -> None:
    payload = json.dumps({"detail": reason}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def secure_mount(blocks: Any) -> None:
    """Make Gradio's own allowed-path check apply to a mounted app: it returns early unless
    ``has_launched`` is set, which only ``Blocks.launch()`` does (gradio/processing_utils.py,
    ``_check_allowed``). With it set, an event's input files must be in the upload folder."""
    blocks.has_launched = True

"""One background event loop per process for all LLM I/O.

LangChain's ChatOpenAI caches its async HTTP client, which binds to the event loop it first ran
on. Running every chain on one long-lived loop keeps that client valid whether the caller is
synchronous (``TableChat.ask``), on its own loop (``TableChat.stream``), or on many loops
(pytest). Events cross back to the caller's loop through a queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (it comes with ``uvicorn[standard]``): less CPU per event."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = _new_loop()
            # database work runs in threads (asyncio.to_thread): enough for many concurrent
            # questions on a slow networked database, not just cores + 4
            loop.set_default_executor(
                concurrent.futures.ThreadPoolExecutor(64, thread_name_prefix="tablechat-db")
            )
            thread = threading.Thread(target=loop.run_forever, name="tablechat-loop", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    return asyncio.run_coroutine_threadsafe(coro, background_loop())


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the background loop and wait for it (from a non-loop thread)."""
    return submit(coro).result()


_END = object()


async def bridge(agen: AsyncIterator[T]) -> AsyncIterator[T]:
    """Iterate ``agen`` on the background loop, yielding its items in the caller's loop."""
    caller = asyncio.get_running_loop()
    loop = background_loop()
    if caller is loop:
        async for item in agen:
            yield item
        return
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for item in agen:
                caller.call_soon_threadsafe(queue.put_nowait, item)
        except BaseException as exc:  # forwarded to the consumer
            caller.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            caller.call_soon_threadsafe(queue.put_nowait, _END)

    future = asyncio.run_coroutine_threadsafe(pump(), loop)
    try:
        while True:
            item = await queue.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if not future.done():
            future.cancel()

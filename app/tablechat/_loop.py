"""One background event loop per process for all LLM I/O.

LangChain's ChatOpenAI caches its async HTTP client, which binds to the event loop it first ran
on. Running every chain on one long-lived loop keeps that client valid whether the caller is
synchronous (``TableChat.ask``), on its own loop (``TableChat.stream``), or on many loops
(pytest). Events cross back to the caller's loop through a queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections import deque
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


async def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` run on the background loop, from any loop: one hand-over each way."""
    if asyncio.get_running_loop() is background_loop():
        return await coro
    return await asyncio.wrap_future(submit(coro))  # cancelling the caller cancels ``coro``


class _Handover:
    """Items passed from the background loop's thread to a consumer on another loop.

    Items pile up in a deque; the consumer's loop is woken (a self-pipe write and a GIL hand-off
    between threads) only when it may be waiting, not once per item, so a consumer that falls
    behind under load collects many items per wake-up.
    """

    def __init__(self, consumer: asyncio.AbstractEventLoop) -> None:
        self._consumer = consumer
        self._lock = threading.Lock()
        self._items: deque[Any] = deque()
        self._armed = False  # a wake-up is on its way, or the consumer will look before waiting
        self._ready = asyncio.Event()

    def put(self, item: Any) -> None:
        """From the producer's thread."""
        with self._lock:
            self._items.append(item)
            wake, self._armed = not self._armed, True
        if wake:
            with contextlib.suppress(RuntimeError):  # the consumer's loop is gone: nobody reads
                self._consumer.call_soon_threadsafe(self._ready.set)

    async def take(self) -> list[Any]:
        """In the consumer's loop: every item there is, waiting for at least one."""
        while True:
            with self._lock:
                batch = list(self._items)
                self._items.clear()
                if not batch:
                    self._armed = False
            if batch:
                return batch
            await self._ready.wait()
            self._ready.clear()


async def bridge(agen: AsyncIterator[T]) -> AsyncIterator[T]:
    """Iterate ``agen`` on the background loop, yielding its items in the caller's loop."""
    caller = asyncio.get_running_loop()
    loop = background_loop()
    if caller is loop:
        async for item in agen:
            yield item
        return
    handover = _Handover(caller)

    async def pump() -> None:
        try:
            async for item in agen:
                handover.put(item)
        except BaseException as exc:  # forwarded to the consumer
            handover.put(exc)
        finally:
            handover.put(_END)

    future = asyncio.run_coroutine_threadsafe(pump(), loop)
    try:
        while True:
            for item in await handover.take():
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
    finally:
        if not future.done():
            future.cancel()

"""One background event loop per process for all LLM I/O.

LangChain's ChatOpenAI caches its async HTTP client, which binds to the event loop it first ran
on. Running every chain on one long-lived loop keeps that client valid whether the caller is
synchronous (``TableChat.ask``), on its own loop (``TableChat.stream``), or on many loops
(pytest). Events cross back to the caller's loop through a queue.

Blocking work (database queries, synchronous chat models) runs in tablechat's worker threads
(:func:`in_thread`: a thread pool of the standard library, long-lived threads so per-thread
resources such as DuckDB cursors can stay in them).

In a server process (``tablechat serve``, each of its ``--workers``) the loop is uvicorn's own:
the app adopts the loop it is built on (:func:`adopt`) before anything else makes one, so a
request's handler and its question's pipeline share one loop and one thread, and uvicorn keeps
its own signal handling in the main thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")
WORKERS = 64  # enough for many concurrent questions on a slow networked database
WORKER_PREFIX = "tablechat-worker"

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
            # for libraries' own run_in_executor calls (DNS lookups, LangChain): as many
            # threads as tablechat's workers, not just cores + 4
            loop.set_default_executor(
                concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="tablechat-io")
            )
            thread = threading.Thread(target=loop.run_forever, name="tablechat-loop", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def adopt(loop: asyncio.AbstractEventLoop) -> bool:
    """Make ``loop`` (running in the calling thread: uvicorn's) tablechat's loop, unless this
    process already has a live one; whether it did. Called where a server builds its app."""
    global _loop
    with _lock:
        if _loop is not None and not _loop.is_closed():
            return _loop is loop
        loop.set_default_executor(
            concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="tablechat-io"))
        _loop = loop
        return True


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    return asyncio.run_coroutine_threadsafe(coro, background_loop())


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the background loop and wait for it (from a non-loop thread).

    One wake-up each way, with no concurrent Future in between. When the wait is interrupted
    (Ctrl-C), the coroutine is cancelled rather than left running.
    """
    loop = background_loop()
    done: queue.SimpleQueue[asyncio.Task[T]] = queue.SimpleQueue()
    started: list[asyncio.Task[T]] = []

    def start() -> None:
        task = loop.create_task(coro)
        started.append(task)
        task.add_done_callback(done.put)

    try:  # an interrupt right after the hand-over must cancel too (issue 15: a loaded run
        # took Ctrl-C between these two lines, leaving the coroutine running)
        loop.call_soon_threadsafe(start)
        task = done.get()
    except BaseException:  # start() is queued first, so the cancel finds its task
        loop.call_soon_threadsafe(lambda: [t.cancel() for t in started])
        raise
    return task.result()


_executor = concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix=WORKER_PREFIX)


def in_worker_thread() -> bool:
    """Whether the current thread is one of tablechat's worker threads (:func:`in_thread`),
    which live as long as the process: per-thread resources can be kept in them."""
    return threading.current_thread().name.startswith(WORKER_PREFIX)


async def in_thread(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``await fn(*args, **kwargs)`` run in one of tablechat's worker threads, as
    ``asyncio.to_thread`` does (the caller's context variables go with it). Cancelling the
    caller abandons the result; the call itself runs to its end, as a thread cannot be
    interrupted."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    call = functools.partial(context.run, _call, fn, *args, **kwargs)
    return await loop.run_in_executor(_executor, call)


def _call(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return fn(*args, **kwargs)
    except StopIteration as exc:  # cannot be set on a Future (asyncio refuses it)
        raise RuntimeError(f"StopIteration: {exc}") from None


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

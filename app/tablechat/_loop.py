"""One background event loop per process for all LLM I/O.

LangChain's ChatOpenAI caches its async HTTP client, which binds to the event loop it first ran
on. Running every chain on one long-lived loop keeps that client valid whether the caller is
synchronous (``TableChat.ask``), on its own loop (``TableChat.stream``), or on many loops
(pytest). Events cross back to the caller's loop through a queue.

Blocking work (database queries, synchronous chat models) runs in tablechat's own worker
threads (:func:`in_thread`), not the loop's default executor: a hand-off there and back costs
about a quarter of ``asyncio.to_thread``'s.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")
WORKERS = 64  # enough for many concurrent questions on a slow networked database

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

    loop.call_soon_threadsafe(start)
    try:
        task = done.get()
    except BaseException:
        loop.call_soon_threadsafe(lambda: [t.cancel() for t in started])
        raise
    return task.result()


class _Workers:
    """Threads for blocking calls awaited from an event loop.

    A call goes to the threads through one queue and its result comes back with one
    ``call_soon_threadsafe``. ``asyncio.to_thread`` also passes through a ThreadPoolExecutor, a
    concurrent Future and two chained callbacks, which costs about four times as much per
    call. A thread is started when a call finds no thread waiting for it, up to ``size``;
    beyond that, calls wait their turn.
    """

    def __init__(self, size: int, prefix: str) -> None:
        self._size = size
        self._prefix = prefix
        self._calls: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._waiting = 0  # threads blocked on the queue
        self._queued = 0  # calls in the queue, not yet taken
        self._started = 0
        self._local = threading.local()

    def submit(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any],
               fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        with self._lock:
            start = self._queued >= self._waiting and self._started < self._size
            self._started += start
            self._queued += 1
            name = f"{self._prefix}_{self._started - 1}"
        if start:
            try:
                threading.Thread(target=self._work, name=name, daemon=True).start()
            except BaseException:  # no thread to be had: the caller hears it, nothing queued
                with self._lock:
                    self._started -= 1
                    self._queued -= 1
                raise
        self._calls.put((loop, future, contextvars.copy_context(), fn, args, kwargs))

    def is_worker(self) -> bool:
        """Whether the current thread is one of these (long-lived) threads."""
        return getattr(self._local, "worker", False)

    def _work(self) -> None:
        self._local.worker = True
        with self._lock:
            self._waiting += 1
        while True:
            loop, future, context, fn, args, kwargs = self._calls.get()
            with self._lock:
                self._waiting -= 1
                self._queued -= 1
            try:
                outcome = (True, context.run(fn, *args, **kwargs))
            except StopIteration as exc:  # cannot be set on a Future (as asyncio does)
                outcome = (False, RuntimeError(f"StopIteration: {exc}"))
            except BaseException as exc:
                outcome = (False, exc)
            with self._lock:  # free again before anyone hears the result (and calls again)
                self._waiting += 1
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, *outcome)
            # hold nothing of the call while waiting for the next one
            del loop, future, context, fn, args, kwargs, outcome


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the awaiting coroutine was cancelled (a timeout): nobody wants it
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


_workers = _Workers(WORKERS, "tablechat-worker")


def in_worker_thread() -> bool:
    """Whether the current thread is one of tablechat's worker threads (:func:`in_thread`),
    which live as long as the process: per-thread resources can be kept in them."""
    return _workers.is_worker()


async def in_thread(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``await fn(*args, **kwargs)`` run in a worker thread, as ``asyncio.to_thread`` does
    (the caller's context variables go with it), for less. Cancelling the caller abandons the
    result; the call itself runs to its end, as a thread cannot be interrupted."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    _workers.submit(loop, future, fn, args, kwargs)
    return await future


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

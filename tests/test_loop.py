"""The background loop: events handed to other loops in order, errors and cancellation carried
across, and ``aask`` folding a question's events where they are made."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import FakeListChatModel

import tablechat
from tablechat import _loop


async def _numbers(n: int, seen: list[str] | None = None) -> AsyncIterator[int]:
    for i in range(n):
        if seen is not None:
            seen.append(threading.current_thread().name)
        yield i
        if i % 50 == 0:
            await asyncio.sleep(0)


def test_bridge_hands_every_item_over_in_order() -> None:
    async def consume() -> list[int]:
        out = []
        async for item in _loop.bridge(_numbers(2000)):
            out.append(item)
            if item % 100 == 0:
                await asyncio.sleep(0.001)  # a slow consumer: items pile up meanwhile
        return out

    assert asyncio.run(consume()) == list(range(2000))


def test_bridge_runs_the_producer_on_the_background_loop() -> None:
    seen: list[str] = []

    async def consume() -> None:
        async for _ in _loop.bridge(_numbers(3, seen)):
            pass

    asyncio.run(consume())
    assert set(seen) == {"tablechat-loop"}


def test_bridge_forwards_the_producers_error_after_its_items() -> None:
    async def failing() -> AsyncIterator[int]:
        yield 1
        yield 2
        raise ValueError("broken producer")

    got: list[int] = []

    async def consume() -> None:
        async for item in _loop.bridge(failing()):
            got.append(item)

    with pytest.raises(ValueError, match="broken producer"):
        asyncio.run(consume())
    assert got == [1, 2]


def test_leaving_a_bridge_early_stops_the_producer() -> None:
    stopped = threading.Event()

    async def endless() -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(0.001)
        finally:
            stopped.set()

    async def consume() -> None:
        async for item in _loop.bridge(endless()):
            if item == 5:
                break

    asyncio.run(consume())
    assert stopped.wait(120)


def _sleeper() -> tuple[threading.Event, threading.Event, Callable[[], Coroutine[Any, Any, None]]]:
    """A coroutine function that sleeps 30 s, and events set when it starts and when it is
    cancelled."""
    started, cancelled = threading.Event(), threading.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    return started, cancelled, slow


def test_run_async_returns_and_cancels_across_loops() -> None:
    started, cancelled, slow = _sleeper()

    async def double(x: int) -> int:
        return 2 * x

    async def caller() -> int:
        task = asyncio.ensure_future(_loop.run_async(slow()))
        await asyncio.to_thread(started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await _loop.run_async(double(21))

    assert asyncio.run(caller()) == 42
    assert cancelled.wait(120)


def _model() -> FakeListChatModel:
    return FakeListChatModel(responses=["SELECT count(*) AS n FROM regions", "There are 5."])


def test_aask_gives_the_same_answer_as_ask(demo_db: Path) -> None:
    with tablechat.connect(demo_db, llm=_model()) as tc:
        sync = tc.ask("  How many regions are there?  ")
        async_ = asyncio.run(tc.aask("  How many regions are there?  "))
    for answer in (sync, async_):
        assert answer.question == "How many regions are there?"
        assert answer.error is None
    assert (async_.sql, async_.rows, async_.text) == (sync.sql, sync.rows, sync.text)
    assert [e.kind for e in async_.events] == [e.kind for e in sync.events]


def test_aask_on_the_background_loop_itself(demo_db: Path) -> None:
    with tablechat.connect(demo_db, llm=_model()) as tc:
        answer = _loop.run_sync(tc.aask("How many regions are there?"))
    assert answer.rows == [(5,)]


def test_aask_refuses_bad_input_before_any_work(demo_db: Path) -> None:
    with tablechat.connect(demo_db, llm=_model()) as tc, pytest.raises(tablechat.BadQuestionError):
        asyncio.run(tc.aask("   "))


# -- in_thread: blocking calls awaited from a loop -----------------------------------------------
def test_in_thread_runs_the_call_in_a_worker_with_the_callers_context() -> None:
    import contextvars

    request = contextvars.ContextVar("request", default="none")

    def work(a: int, *, b: int) -> tuple[int, str, str]:
        return a + b, threading.current_thread().name, request.get()

    async def main() -> tuple[int, str, str]:
        request.set("q-17")
        return await _loop.in_thread(work, 2, b=3)

    total, thread, seen = asyncio.run(main())
    assert total == 5
    assert thread.startswith("tablechat-worker")
    assert seen == "q-17"


@pytest.mark.parametrize("error", [ValueError("bad value"), KeyError("missing")])
def test_in_thread_raises_the_calls_own_error(error: Exception) -> None:
    def fail() -> None:
        raise error

    async def main() -> None:
        await _loop.in_thread(fail)

    with pytest.raises(type(error)) as caught:
        asyncio.run(main())
    assert caught.value is error


def test_in_thread_turns_stop_iteration_into_an_error_a_future_can_carry() -> None:
    def fail() -> None:
        raise StopIteration("done")

    async def main() -> None:
        await _loop.in_thread(fail)

    with pytest.raises(RuntimeError, match="StopIteration"):
        asyncio.run(main())


def test_in_thread_calls_run_at_once_on_separate_threads() -> None:
    barrier = threading.Barrier(12)  # passes only when all twelve wait on it together

    def meet(i: int) -> str:
        barrier.wait(10)
        return threading.current_thread().name

    async def main() -> list[str]:
        return await asyncio.gather(*(_loop.in_thread(meet, i) for i in range(12)))

    names = asyncio.run(main())
    assert len(set(names)) == 12


def test_a_cancelled_caller_leaves_the_pool_working() -> None:
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(10)
        return "late"

    async def main() -> str:
        task = asyncio.ensure_future(_loop.in_thread(slow))
        await asyncio.to_thread(started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()  # the abandoned call ends; its result is dropped without an error
        return await _loop.in_thread(str.upper, "next")

    assert asyncio.run(main()) == "NEXT"


# -- run_sync -------------------------------------------------------------------------------------
def test_run_sync_returns_the_result_and_raises_the_error() -> None:
    async def double(x: int) -> int:
        return 2 * x

    async def fail() -> None:
        raise LookupError("no such thing")

    assert _loop.run_sync(double(21)) == 42
    with pytest.raises(LookupError, match="no such thing"):
        _loop.run_sync(fail())


INTERRUPTED_RUN_SYNC = """
import asyncio, signal, threading
from tablechat import _loop

# Ctrl-C as a terminal delivers it: a job a shell starts in the background (CI's, or any
# `make test &`) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler
signal.signal(signal.SIGINT, signal.default_int_handler)
started, cancelled = threading.Event(), threading.Event()

async def slow():
    started.set()
    try:
        await asyncio.sleep(600)
    except asyncio.CancelledError:
        cancelled.set()
        raise

def interrupt():
    started.wait()  # only once the coroutine runs (a task cancelled earlier never starts)
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

threading.Thread(target=interrupt, daemon=True).start()
try:
    _loop.run_sync(slow())
    print("returned")
except KeyboardInterrupt:
    print("interrupted", "cancelled" if cancelled.wait(60) else "left running")
"""


def test_interrupting_run_sync_cancels_the_coroutine() -> None:
    """Ctrl-C while ``run_sync`` waits cancels the coroutine on the background loop.

    Run in a fresh interpreter with Python's own SIGINT handler: signal handling is the
    process's, and the suite's may have SIGINT ignored (a shell's background job inherits it
    so: this test failed in CI-like runs and passed alone, issue 15)."""
    import subprocess
    import sys

    app = Path(tablechat.__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", INTERRUPTED_RUN_SYNC], capture_output=True,
                         text=True, timeout=300, cwd=app, check=False,
                         env={**__import__("os").environ, "PYTHONPATH": str(app)})
    assert out.stdout.split() == ["interrupted", "cancelled"], out.stderr[-2000:]


def test_in_worker_thread_tells_tablechat_s_workers_apart() -> None:
    async def main() -> tuple[bool, bool, bool]:
        other = await asyncio.to_thread(_loop.in_worker_thread)
        return _loop.in_worker_thread(), other, await _loop.in_thread(_loop.in_worker_thread)

    assert asyncio.run(main()) == (False, False, True)

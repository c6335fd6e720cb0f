"""The background loop: events handed to other loops in order, errors and cancellation carried
across, and ``aask`` folding a question's events where they are made."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

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
    assert stopped.wait(5)


def test_run_async_returns_and_cancels_across_loops() -> None:
    started, cancelled = threading.Event(), threading.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

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
    assert cancelled.wait(5)


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

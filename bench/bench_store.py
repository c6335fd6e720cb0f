"""The store under load: 8 processes writing feedback at once for 30 s (``BENCH_STORE_SECONDS``)
on one SQLite file, then a count check: every write that returned is in the store."""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import Row

PROCESSES = 8


def _writer(url: str, ready: Any, start: Any, seconds: float, done: Any, worker: int) -> None:
    from tablechat.store import FeedbackRecord, SQLStore

    store = SQLStore(url)
    ready.put(worker)
    start.wait()
    stop_at = time.monotonic() + seconds
    n = 0
    while time.monotonic() < stop_at:
        store.add_feedback(FeedbackRecord("bench", f"w{worker} q{n}", good=n % 2 == 0,
                                          comment="x" * 200))
        n += 1
    done.put(n)
    store.close()


def run() -> list[Row]:
    from tablechat.store import SQLStore

    seconds = float(os.environ.get("BENCH_STORE_SECONDS", "30"))
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'store.sqlite'}"
        ctx = multiprocessing.get_context("spawn")
        ready, start, done = ctx.Queue(), ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_writer, args=(url, ready, start, seconds, done, w))
                 for w in range(PROCESSES)]
        for p in procs:
            p.start()
        for _ in procs:  # every process has imported and opened the store: start together
            ready.get()
        start.set()
        written = sum(done.get() for _ in procs)
        for p in procs:
            p.join()
        store = SQLStore(url)
        found = store.count_feedback()
        store.close()
    lost = written - found
    return [
        Row(f"store: feedback writes, {PROCESSES} processes, {seconds:.0f} s", written / seconds,
            "w/s"),
        Row("store: writes lost", float(lost), "rows", goal="0", ok=lost == 0),
    ]

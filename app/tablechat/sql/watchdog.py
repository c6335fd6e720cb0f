"""One watchdog thread that interrupts queries at their deadline.

DuckDB's ``max_execution_time`` and ``memory_limit`` do not bound everything a statement costs
(issue 11, class 2: 10,000 ``UNION ALL`` branches ran 14 s past a 5 s timeout). A query is
therefore armed here before it starts: at its deadline the watchdog calls the cursor's
``interrupt()``, which DuckDB honours wherever it checks for interruption, planning and
fetching included. One thread serves every query (a ``threading.Timer`` per query would start a
thread per query).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator


class Alarm:
    """One armed deadline. ``fired`` tells, after the guarded work, whether it went off."""

    __slots__ = ("active", "callback", "deadline", "fired")

    def __init__(self, deadline: float, callback: Callable[[], object]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.active = True
        self.fired = False


class Watchdog:
    """Calls each armed callback once its deadline passes, unless it was disarmed first.

    The callback runs under the watchdog's lock, and :meth:`disarm` takes that lock: once
    ``disarm`` returns, the callback has either run or never will, so an interrupt meant for
    one query never lands on the next one on the same cursor.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Alarm]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, callback: Callable[[], object]) -> Alarm:
        """Call ``callback`` in ``seconds`` unless disarmed before."""
        alarm = Alarm(time.monotonic() + seconds, callback)
        with self._cond:
            heapq.heappush(self._heap, (alarm.deadline, next(self._seq), alarm))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="tablechat-watchdog", daemon=True)
                self._thread.start()
            if self._heap[0][2] is alarm:  # due before all others: the thread must wake sooner
                self._cond.notify()
        return alarm

    def disarm(self, alarm: Alarm) -> None:
        """Cancel ``alarm``; afterwards its callback is certainly not running."""
        with self._cond:
            alarm.active = False

    @contextlib.contextmanager
    def guard(self, seconds: float, callback: Callable[[], object]) -> Iterator[Alarm]:
        """Arm for the ``with`` block's duration."""
        alarm = self.arm(seconds, callback)
        try:
            yield alarm
        finally:
            self.disarm(alarm)

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and not self._heap[0][2].active:
                    heapq.heappop(self._heap)  # disarmed: drop without waiting for it
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, _, alarm = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                alarm.active = False
                alarm.fired = True
                with contextlib.suppress(Exception):  # a closed cursor cannot be interrupted
                    alarm.callback()


WATCHDOG = Watchdog()
"""The process's one watchdog."""

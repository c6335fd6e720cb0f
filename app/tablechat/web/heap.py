"""The server's start-up heap, kept out of the garbage collector's way.

A full collection (generation 2) walks every container object the process holds, and holds
the GIL while it does: every thread and the event loop every question runs on stop. A served
tablechat holds about a million such objects once Gradio, pandas, LangChain, sqlglot and the
schema are loaded, nearly all of them made at start-up and alive until the process ends.
Under load (32 clients asking) a full collection came every ~7 s and froze the process for
0.5-1.7 s on the shared 2-core machine, collecting almost nothing: that freeze, not the
attacks, was most of what ``bench_attack`` measured as "slower under attack" (its quiet and
loaded phases differed 2.2-2.7x with the hostile clients sending nothing at all).

:func:`settle` collects once, then moves everything alive into the permanent generation
(``gc.freeze()``), which later collections skip. They then walk only what was made since:
objects made at start-up are still freed by reference counting when dropped; only a cycle
among them would never be collected, which is why this runs once, after start-up, and not
per request.

It also makes the youngest generation's collections rarer (:data:`THRESHOLDS`). A question's
objects live for its whole answer (hundreds of milliseconds, while the other questions
allocate): at CPython's default of one collection per 700 allocations each was walked several
times and promoted before it died, for nothing, as almost none of it is cyclic. Served on the
vLLM path (32 clients, one worker), collections took 0.14 s of CPU per 391 questions at the
default and 0.025 s at 10,000 (issue 15, ``gc.callbacks`` timed with ``time.thread_time``).
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

# (youngest, middle, oldest): CPython's default is (700, 10, 10)
THRESHOLDS = (10_000, 10, 10)


def settle() -> int:
    """Collect, then exclude every object alive now from later collections, and collect
    the young generation less often (:data:`THRESHOLDS`); returns how many objects the
    collector will skip from now on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    frozen = gc.get_freeze_count()
    log.debug("start-up heap settled: %d objects skipped by later collections", frozen)
    return frozen

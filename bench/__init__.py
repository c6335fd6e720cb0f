"""Benchmarks. ``python -m bench`` (``make bench``) runs every ``bench/bench_*.py`` module's
``run()`` and prints one table: each row is a measure of ours beside the alternative's (or a
goal), from this one run."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Row:
    name: str  # what is measured
    ours: float
    unit: str  # "µs", "ms", "%", "q/s"
    theirs: float | None = None  # the alternative on the same input, when there is one
    alternative: str = ""  # what "theirs" is
    goal: str = ""  # e.g. "< 1 ms", ">= 90%"
    ok: bool | None = None  # goal met?

    @property
    def ratio(self) -> float | None:
        if self.theirs in (None, 0) or self.ours == 0:
            return None
        return self.theirs / self.ours  # how many times ours is faster (for times)


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def p50(values: Sequence[float]) -> float:
    return statistics.median(values)

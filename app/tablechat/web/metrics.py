"""A tiny Prometheus registry (counters, a gauge, histograms) and the question meter.

Text exposition format 0.0.4; no dependency. One registry per server (``create_app``), so
tests and several apps in one process never share counts.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

from .. import events as ev
from ..answer import Usage

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(labels: Labels, extra: Iterable[tuple[str, str]] = ()) -> str:
    items = [*labels, *extra]
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class _Metric:
    name: str
    help: str
    kind: str  # counter | gauge | histogram
    buckets: tuple[float, ...] = ()
    values: dict[Labels, float] = field(default_factory=dict)
    hist: dict[Labels, list[float]] = field(default_factory=dict)  # bucket counts, then sum, count


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def _metric(self, name: str, help_text: str, kind: str,
                buckets: Sequence[float] = ()) -> _Metric:
        metric = self._metrics.get(name)
        if metric is None:
            metric = _Metric(name, help_text, kind, tuple(buckets))
            self._metrics[name] = metric
        return metric

    def declare(self, name: str, help_text: str, kind: str, buckets: Sequence[float] = ()) -> None:
        with self._lock:
            self._metric(name, help_text, kind, buckets)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            metric = self._metrics[name]
            metric.values[key] = metric.values.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._metrics[name].values[key] = value

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            metric = self._metrics[name]
            counts = metric.hist.get(key)
            if counts is None:
                counts = metric.hist[key] = [0.0] * (len(metric.buckets) + 2)
            for i, bound in enumerate(metric.buckets):
                if value <= bound:
                    counts[i] += 1
            counts[-2] += value
            counts[-1] += 1

    def value(self, name: str, **labels: str) -> float:
        """A counter's or gauge's current value (0 when never set), for tests and the UI."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            return self._metrics[name].values.get(key, 0.0)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for metric in self._metrics.values():
                lines.append(f"# HELP {metric.name} {metric.help}")
                lines.append(f"# TYPE {metric.name} {metric.kind}")
                if metric.kind == "histogram":
                    for key, counts in sorted(metric.hist.items()):
                        for bound, count in zip(metric.buckets, counts, strict=False):
                            le = _labels(key, [("le", _num(bound))])
                            lines.append(f"{metric.name}_bucket{le} {_num(count)}")
                        inf = _labels(key, [("le", "+Inf")])
                        lines.append(f"{metric.name}_bucket{inf} {_num(counts[-1])}")
                        lines.append(f"{metric.name}_sum{_labels(key)} {_num(counts[-2])}")
                        lines.append(f"{metric.name}_count{_labels(key)} {_num(counts[-1])}")
                else:
                    for key, value in sorted(metric.values.items()):
                        lines.append(f"{metric.name}{_labels(key)} {_num(value)}")
        return "\n".join(lines) + "\n"


class Metrics:
    """The server's metrics: questions, errors, latency, retries, engines, SQL runs, uploads."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        r = self.registry = Registry()
        r.declare("tablechat_questions_total",
                  "Questions answered, by front end (ui, api, openai), engine and outcome.",
                  "counter")
        r.declare("tablechat_question_errors_total",
                  "Questions that ended in an error, by front end and error type.", "counter")
        r.declare("tablechat_question_seconds",
                  "Seconds from a question to its last event, by front end.", "histogram",
                  LATENCY_BUCKETS)
        r.declare("tablechat_first_event_seconds",
                  "Seconds from a question to its first SQL, token or answer, by front end.",
                  "histogram", LATENCY_BUCKETS)
        r.declare("tablechat_sql_retries_total",
                  "Generated SQL sent back to the LLM for repair, by front end.", "counter")
        r.declare("tablechat_llm_tokens_total",
                  "LLM tokens used by questions, by kind (prompt, completion).", "counter")
        r.declare("tablechat_questions_in_flight", "Questions being answered now.", "gauge")
        r.declare("tablechat_sql_runs_total",
                  "SQL typed by people and run through the guard, by outcome.", "counter")
        r.declare("tablechat_uploads_total", "File uploads, by outcome.", "counter")
        r.declare("tablechat_bad_requests_total",
                  "Requests refused before answering (empty or too long question, bad body), "
                  "by front end.", "counter")
        r.declare("tablechat_auth_refusals_total",
                  "Requests refused by auth, by reason (missing, wrong, limited: too many "
                  "failures from the address or for the user).", "counter")
        self.registry.set("tablechat_questions_in_flight", 0)
        self._in_flight = 0
        self._lock = threading.Lock()

    def render(self) -> str:
        return self.registry.render()

    def _flight(self, delta: int) -> None:
        with self._lock:
            self._in_flight += delta
            self.registry.set("tablechat_questions_in_flight", self._in_flight)

    async def meter(
        self, events: AsyncIterator[ev.Event], front: str, usage: Usage | None = None
    ) -> AsyncIterator[ev.Event]:
        """Pass ``events`` through, counting what they say. A cancelled stream counts as
        outcome "cancelled"."""
        start = time.perf_counter()
        first: float | None = None
        engine, outcome = "none", "cancelled"
        self._flight(+1)
        try:
            async for event in events:
                if first is None and isinstance(event, ev.SQL | ev.Token | ev.AnswerText):
                    first = time.perf_counter() - start
                if isinstance(event, ev.Status) and event.step == "retry":
                    self.registry.inc("tablechat_sql_retries_total", front=front)
                elif isinstance(event, ev.AnswerText):
                    engine = event.engine or engine
                elif isinstance(event, ev.Error):
                    self.registry.inc("tablechat_question_errors_total", front=front,
                                      error_type=event.error_type or "Error")
                elif isinstance(event, ev.Done):
                    outcome = "ok" if event.ok else "error"
                yield event
        finally:
            self._flight(-1)
            elapsed = time.perf_counter() - start
            r = self.registry
            r.inc("tablechat_questions_total", front=front, engine=engine, outcome=outcome)
            r.observe("tablechat_question_seconds", elapsed, front=front)
            if first is not None:
                r.observe("tablechat_first_event_seconds", first, front=front)
            if usage is not None:
                r.inc("tablechat_llm_tokens_total", usage.prompt_tokens, kind="prompt")
                r.inc("tablechat_llm_tokens_total", usage.completion_tokens, kind="completion")

    def bad_request(self, front: str) -> None:
        self.registry.inc("tablechat_bad_requests_total", front=front)

    def auth_refused(self, reason: str) -> None:
        """Count a request auth refused: ``missing``, ``wrong`` or ``limited``."""
        self.registry.inc("tablechat_auth_refusals_total", reason=reason)

    def sql_run(self, outcome: str) -> None:
        self.registry.inc("tablechat_sql_runs_total", outcome=outcome)

    def upload(self, outcome: str) -> None:
        self.registry.inc("tablechat_uploads_total", outcome=outcome)

"""The server's Prometheus metrics, on ``prometheus_client``, and the question meter.

Two modes, chosen by ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's own switch):

- **unset** (one process): each :class:`Metrics` has a registry of its own
  (``CollectorRegistry``), so several apps in one process (tests, embedding) never share
  counts or collide on names.
- **set** (``tablechat serve --workers N``): every worker writes its samples to files in that
  directory and ``/metrics``, whichever worker answers it, sums all of them
  (``MultiProcessCollector``). The parent calls :func:`prepare_multiprocess` before it starts
  the workers; a worker that ends calls :func:`process_exited`, and one that was killed (its
  in-flight gauge left behind) is found by :func:`sweep_dead_workers` when ``/metrics`` is
  rendered (uvicorn's supervisor restarts it, and tells nobody). prometheus_client picks
  its mode when it is first imported, so the variable must be set before a worker imports it:
  spawned workers inherit it from the parent.

The metric and label names are the hand-written registry's that came before (docs/web.md,
tests/test_metrics.py holds the set).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import generate_latest

from .. import events as ev
from ..answer import Usage

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# counters and histograms would each add a `_created` series: not names tablechat exports
# (and multiprocess mode never has them, so one process would differ from N)
prometheus_client.disable_created_metrics()


def prepare_multiprocess(directory: Path) -> None:
    """Before worker processes start (in their parent): make ``directory`` the place every
    worker writes its metrics (``PROMETHEUS_MULTIPROC_DIR``, inherited by the workers) and
    empty it, so no count of an earlier run is added to this one's."""
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    os.environ[MULTIPROC_ENV] = str(directory)


def process_exited(pid: int) -> None:
    """A worker ended: its in-flight questions stop counting (its counters and histograms
    stay in the sums, as a Prometheus counter must never go down). Nothing to do in one
    process (``PROMETHEUS_MULTIPROC_DIR`` unset)."""
    directory = multiprocess_dir()
    if directory is not None:
        multiprocess.mark_process_dead(pid, directory)


# the files of a worker's "live" gauges (livesum, liveall, ...), named after its pid
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]*_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_dead_workers(directory: str) -> list[int]:
    """The workers whose live gauges are in ``directory`` but whose process is gone (killed,
    crashed: it never called :func:`process_exited`): their live gauges leave the sums, as
    prometheus_client's ``mark_process_dead`` does. Returns their pids."""
    dead = set()
    for entry in os.scandir(directory):
        match = _LIVE_GAUGE_FILE.match(entry.name)
        if match and not _alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in sorted(dead):
        multiprocess.mark_process_dead(pid, directory)
    return sorted(dead)


def multiprocess_dir() -> str | None:
    """The directory all workers write their metrics to, or None for one process."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """The server's metrics: questions, errors, latency, retries, engines, SQL runs, uploads."""

    # generate_latest writes format 0.0.4 (newer releases' CONTENT_TYPE_LATEST names 1.0.0)
    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = multiprocess_dir()
        r = self.registry
        self.questions = Counter(
            "tablechat_questions_total",
            "Questions answered, by front end (ui, api, openai), engine and outcome.",
            ["front", "engine", "outcome"], registry=r)
        self.question_errors = Counter(
            "tablechat_question_errors_total",
            "Questions that ended in an error, by front end and error type.",
            ["front", "error_type"], registry=r)
        self.question_seconds = Histogram(
            "tablechat_question_seconds",
            "Seconds from a question to its last event, by front end.",
            ["front"], buckets=LATENCY_BUCKETS, registry=r)
        self.first_event_seconds = Histogram(
            "tablechat_first_event_seconds",
            "Seconds from a question to its first SQL, token or answer, by front end.",
            ["front"], buckets=LATENCY_BUCKETS, registry=r)
        self.sql_retries = Counter(
            "tablechat_sql_retries_total",
            "Generated SQL sent back to the LLM for repair, by front end.", ["front"],
            registry=r)
        self.llm_tokens = Counter(
            "tablechat_llm_tokens_total",
            "LLM tokens used by questions, by kind (prompt, completion).", ["kind"],
            registry=r)
        # livesum: the questions running now in the workers alive now (process_exited drops
        # a dead worker's)
        self.in_flight = Gauge(
            "tablechat_questions_in_flight", "Questions being answered now.", registry=r,
            multiprocess_mode="livesum")
        self.sql_runs = Counter(
            "tablechat_sql_runs_total",
            "SQL typed by people and run through the guard, by outcome.", ["outcome"],
            registry=r)
        self.uploads = Counter("tablechat_uploads_total", "File uploads, by outcome.",
                               ["outcome"], registry=r)
        self.bad_requests = Counter(
            "tablechat_bad_requests_total",
            "Requests refused before answering (empty or too long question, bad body), "
            "by front end.", ["front"], registry=r)
        self.auth_refusals = Counter(
            "tablechat_auth_refusals_total",
            "Requests refused by auth, by reason (missing, wrong, limited: too many "
            "failures from the address or for the user).", ["reason"], registry=r)

    def render(self) -> str:
        """Prometheus text (format 0.0.4): this app's metrics, or with
        ``PROMETHEUS_MULTIPROC_DIR`` set, the sums over every worker's."""
        if self.multiprocess is None:
            return generate_latest(self.registry).decode()
        sweep_dead_workers(self.multiprocess)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=self.multiprocess)
        return generate_latest(merged).decode()

    def value(self, name: str, **labels: str) -> float:
        """A sample's value in this process (0 when never recorded), for tests and the UI."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    def _flight(self, delta: int) -> None:
        self.in_flight.inc(delta)

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
                    self.sql_retries.labels(front=front).inc()
                elif isinstance(event, ev.AnswerText):
                    engine = event.engine or engine
                elif isinstance(event, ev.Error):
                    self.question_errors.labels(
                        front=front, error_type=event.error_type or "Error").inc()
                elif isinstance(event, ev.Done):
                    outcome = "ok" if event.ok else "error"
                yield event
        finally:
            self._flight(-1)
            elapsed = time.perf_counter() - start
            self.questions.labels(front=front, engine=engine, outcome=outcome).inc()
            self.question_seconds.labels(front=front).observe(elapsed)
            if first is not None:
                self.first_event_seconds.labels(front=front).observe(first)
            if usage is not None:
                self.llm_tokens.labels(kind="prompt").inc(usage.prompt_tokens)
                self.llm_tokens.labels(kind="completion").inc(usage.completion_tokens)

    def bad_request(self, front: str) -> None:
        """Count a request refused before answering (empty or too long question, bad body)."""
        self.bad_requests.labels(front=front).inc()

    def auth_refused(self, reason: str) -> None:
        """Count a request auth refused: ``missing``, ``wrong`` or ``limited``."""
        self.auth_refusals.labels(reason=reason).inc()

    def sql_run(self, outcome: str) -> None:
        """Count SQL typed in the UI: ``ok`` or ``refused``."""
        self.sql_runs.labels(outcome=outcome).inc()

    def upload(self, outcome: str) -> None:
        """Count a file upload: ``ok`` or ``refused``."""
        self.uploads.labels(outcome=outcome).inc()

"""Metrics on prometheus_client (issue 15): the names and labels /metrics had before, one
registry per app in one process, and sums over real worker processes in multiprocess mode."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tablechat import events as ev
from tablechat.answer import Usage
from tablechat.web import metrics as metrics_mod
from tablechat.web.metrics import Metrics, prepare_multiprocess, process_exited

ROOT = Path(__file__).resolve().parents[1]

# What the hand-written registry rendered (metric sample name, label names) after one of
# each recording, captured before the move to prometheus_client: dashboards and alerts read
# these names.
BEFORE = {
    ("tablechat_questions_total", ("engine", "front", "outcome")),
    ("tablechat_question_errors_total", ("error_type", "front")),
    ("tablechat_question_seconds_bucket", ("front", "le")),
    ("tablechat_question_seconds_sum", ("front",)),
    ("tablechat_question_seconds_count", ("front",)),
    ("tablechat_first_event_seconds_bucket", ("front", "le")),
    ("tablechat_first_event_seconds_sum", ("front",)),
    ("tablechat_first_event_seconds_count", ("front",)),
    ("tablechat_sql_retries_total", ("front",)),
    ("tablechat_llm_tokens_total", ("kind",)),
    ("tablechat_questions_in_flight", ()),
    ("tablechat_sql_runs_total", ("outcome",)),
    ("tablechat_uploads_total", ("outcome",)),
    ("tablechat_bad_requests_total", ("front",)),
    ("tablechat_auth_refusals_total", ("reason",)),
}
TYPES_BEFORE = {
    "tablechat_questions_total": "counter", "tablechat_question_errors_total": "counter",
    "tablechat_question_seconds": "histogram", "tablechat_first_event_seconds": "histogram",
    "tablechat_sql_retries_total": "counter", "tablechat_llm_tokens_total": "counter",
    "tablechat_questions_in_flight": "gauge", "tablechat_sql_runs_total": "counter",
    "tablechat_uploads_total": "counter", "tablechat_bad_requests_total": "counter",
    "tablechat_auth_refusals_total": "counter",
}
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(name, sorted labels): value} of Prometheus text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = _SAMPLE.match(line)
        assert found, line
        name, labels, value = found.groups()
        out[name, tuple(sorted(_LABEL.findall(labels or "")))] = float(value)
    return out


def types(text: str) -> dict[str, str]:
    return dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE "))


def record_one_of_each(m: Metrics, front: str = "api") -> None:
    async def events() -> Any:
        yield ev.Status(step="retry", message="retrying")
        yield ev.SQL(sql="SELECT 1", attempt=1)
        yield ev.AnswerText(text="one", engine="llm")
        yield ev.Error(message="late", error_type="NoAnswerError")
        yield ev.Done(ok=True)

    async def drain() -> None:
        async for _ in m.meter(events(), front, Usage(prompt_tokens=7, completion_tokens=3)):
            pass

    asyncio.run(drain())
    m.bad_request(front)
    m.auth_refused("wrong")
    m.sql_run("ok")
    m.upload("ok")


def test_metric_and_label_names_are_the_ones_before() -> None:
    m = Metrics()
    record_one_of_each(m)
    text = m.render()
    got = {(name, tuple(k for k, _ in labels)) for name, labels in samples(text)}
    assert got == BEFORE
    assert types(text) == TYPES_BEFORE


def test_apps_in_one_process_count_apart() -> None:
    first, second = Metrics(), Metrics()
    record_one_of_each(first)
    record_one_of_each(first)
    record_one_of_each(second)
    assert first.value("tablechat_uploads_total", outcome="ok") == 2
    assert second.value("tablechat_uploads_total", outcome="ok") == 1
    assert samples(second.render())[
        "tablechat_questions_total", (("engine", "llm"), ("front", "api"), ("outcome", "ok"))
    ] == 1


# --- several processes ------------------------------------------------------------------------
WORKER = """
import asyncio, sys
from tablechat import events as ev
from tablechat.web.metrics import Metrics

m = Metrics()
assert m.multiprocess, "the worker did not inherit PROMETHEUS_MULTIPROC_DIR"
for _ in range(int(sys.argv[1])):
    m.upload("ok")
m.bad_request("api")
m.question_seconds.labels(front="api").observe(float(sys.argv[2]))

async def never_done():
    yield ev.Status(step="schema", message="reading schema")
    await asyncio.Event().wait()

async def main():
    if sys.argv[3] == "busy":
        stream = m.meter(never_done(), "api")
        await anext(stream)  # one question in flight until the worker is killed
    sys.stdout.write("recorded\\n")
    sys.stdout.flush()
    await asyncio.to_thread(sys.stdin.read)  # alive until the parent closes stdin

asyncio.run(main())
"""


@pytest.fixture
def multiproc_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv(metrics_mod.MULTIPROC_ENV, raising=False)
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_12345.db").write_bytes(b"left by an earlier run")
    prepare_multiprocess(directory)
    try:
        yield directory
    finally:
        os.environ.pop(metrics_mod.MULTIPROC_ENV, None)


def test_prepare_multiprocess_empties_the_directory_and_sets_the_variable(
        multiproc_dir: Path) -> None:
    assert list(multiproc_dir.iterdir()) == []
    assert os.environ[metrics_mod.MULTIPROC_ENV] == str(multiproc_dir)


def _worker(uploads: int, seconds: float, state: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'app'}{os.pathsep}{ROOT}"}
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(uploads), str(seconds), state],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "recorded\n"  # waits on the worker's state, not a clock
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0


def _kill(proc: subprocess.Popen[str]) -> None:
    """A worker that dies with a question in flight (its meter never ends)."""
    proc.kill()
    proc.wait(timeout=60)
    assert proc.stdin is not None
    proc.stdin.close()


def test_metrics_sum_over_worker_processes(multiproc_dir: Path) -> None:
    a = _worker(2, 0.2, "busy")
    b = _worker(3, 20.0, "idle")
    try:
        parent = Metrics()  # what /metrics renders in whichever worker answers
        got = samples(parent.render())
        assert got["tablechat_uploads_total", (("outcome", "ok"),)] == 5
        assert got["tablechat_bad_requests_total", (("front", "api"),)] == 2
        assert got["tablechat_question_seconds_count", (("front", "api"),)] == 2
        assert got["tablechat_question_seconds_bucket", (("front", "api"), ("le", "0.25"))] == 1
        assert got["tablechat_question_seconds_bucket", (("front", "api"), ("le", "+Inf"))] == 2
        assert got["tablechat_questions_in_flight", ()] == 1
        names = {(name, tuple(k for k, _ in labels)) for name, labels in got}
        assert names <= BEFORE
        assert types(parent.render()).items() <= TYPES_BEFORE.items()
    finally:
        _kill(a)
        _stop(b)
    # the killed worker's question stops counting (nobody told: uvicorn's supervisor just
    # restarts a killed worker); its counters stay in the sums
    got = samples(Metrics().render())
    assert got.get(("tablechat_questions_in_flight", ()), 0) == 0  # no live worker: no series
    assert got["tablechat_uploads_total", (("outcome", "ok"),)] == 5
    assert not list(multiproc_dir.glob(f"gauge_live*_{a.pid}.db"))


def test_a_worker_that_ends_takes_its_in_flight_questions_along(multiproc_dir: Path) -> None:
    a = _worker(0, 0.1, "busy")
    try:
        assert samples(Metrics().render())["tablechat_questions_in_flight", ()] == 1
        process_exited(a.pid)  # what a worker's shutdown does (it is still running here)
        got = samples(Metrics().render())
        assert got.get(("tablechat_questions_in_flight", ()), 0) == 0
    finally:
        _kill(a)

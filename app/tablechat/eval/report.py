"""Summaries (human table and JSON), the per-question JSONL report and the progress bar."""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .harness import GOLD_ERROR, NO_DATABASE, EvalRun, QuestionResult


@dataclass(slots=True)
class Tally:
    total: int = 0  # questions scored
    answered: int = 0  # of those, the engine returned a result
    correct: int = 0  # strict column order
    correct_any_order: int = 0  # columns in any order (Spider's test-suite evaluation)

    def add(self, result: QuestionResult) -> None:
        self.total += 1
        self.answered += int(result.answered)
        self.correct += int(result.correct)
        self.correct_any_order += int(result.correct_any_order)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def precision(self) -> float:
        return self.correct / self.answered if self.answered else 0.0

    @property
    def accuracy_any_order(self) -> float:
        return self.correct_any_order / self.total if self.total else 0.0

    @property
    def precision_any_order(self) -> float:
        return self.correct_any_order / self.answered if self.answered else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "answered": self.answered, "correct": self.correct,
                "accuracy": round(self.accuracy, 6), "precision": round(self.precision, 6),
                "correct_any_order": self.correct_any_order,
                "accuracy_any_order": round(self.accuracy_any_order, 6),
                "precision_any_order": round(self.precision_any_order, 6)}


@dataclass(slots=True)
class Summary:
    dataset: str
    engine: str
    questions: int
    overall: Tally
    no_database: int
    gold_errors: int
    by_db: dict[str, Tally] = field(default_factory=dict)
    by_kind: dict[str, Tally] = field(default_factory=dict)
    wall_time: float = 0.0
    build_time: float = 0.0
    latency_p50: float = 0.0
    latency_p95: float = 0.0
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served from the server's prefix cache
    sql_calls: int = 0  # LLM calls that wrote SQL
    errors: int = 0  # scored questions whose prediction failed with an error
    fallbacks: int = 0  # --engine llm: answered by the offline engine instead (not counted)
    fallback_correct: int = 0  # of those, right
    workers: int = 0  # questions run at once
    workers_from: str = ""  # "--workers", "server slots" or "default"

    def per_question(self, value: int) -> float:
        """``value`` per scored question."""
        return value / self.overall.total if self.overall.total else 0.0

    @property
    def cached_share(self) -> float:
        """The share of prompt tokens served from the server's prefix cache."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def summarize(run: EvalRun) -> Summary:
    results = run.results
    summary = Summary(
        dataset=run.dataset.name,
        engine=run.options.engine,
        questions=len(results),
        overall=Tally(),
        no_database=sum(r.status == NO_DATABASE for r in results),
        gold_errors=sum(r.status == GOLD_ERROR for r in results),
        wall_time=run.wall_time,
        build_time=run.build_time,
        workers=run.workers,
        workers_from=run.workers_from,
    )
    latencies = []
    for r in results:
        if not r.scored:
            continue
        summary.overall.add(r)
        summary.by_db.setdefault(r.db, Tally()).add(r)
        summary.by_kind.setdefault(r.kind, Tally()).add(r)
        latencies.append(r.latency)
        summary.llm_calls += r.llm_calls
        summary.prompt_tokens += r.prompt_tokens
        summary.completion_tokens += r.completion_tokens
        summary.cached_tokens += r.cached_tokens
        summary.sql_calls += r.sql_calls
        summary.fallbacks += int(r.fallback)
        summary.fallback_correct += int(r.fallback_correct)
        summary.errors += int(r.error is not None)
    summary.by_db = dict(sorted(summary.by_db.items()))
    summary.by_kind = dict(sorted(summary.by_kind.items()))
    summary.latency_p50 = _percentile(latencies, 50)
    summary.latency_p95 = _percentile(latencies, 95)
    return summary


def summary_json(summary: Summary) -> dict[str, Any]:
    """The ``--json`` line: the seven headline keys first, details after."""
    overall = summary.overall
    return {
        "dataset": summary.dataset,
        "engine": summary.engine,
        "total": overall.total,
        "answered": overall.answered,
        "correct": overall.correct,
        "accuracy": round(overall.accuracy, 6),
        "precision": round(overall.precision, 6),
        "correct_any_order": overall.correct_any_order,
        "accuracy_any_order": round(overall.accuracy_any_order, 6),
        "precision_any_order": round(overall.precision_any_order, 6),
        "questions": summary.questions,
        "no_database": summary.no_database,
        "gold_errors": summary.gold_errors,
        "errors": summary.errors,
        "wall_time": round(summary.wall_time, 3),
        "latency_p50": round(summary.latency_p50, 4),
        "latency_p95": round(summary.latency_p95, 4),
        "llm_calls": summary.llm_calls,
        "prompt_tokens": summary.prompt_tokens,
        "completion_tokens": summary.completion_tokens,
        "cached_tokens": summary.cached_tokens,
        "cached_share": round(summary.cached_share, 6),
        "sql_calls": summary.sql_calls,
        "per_question": {
            "llm_calls": round(summary.per_question(summary.llm_calls), 4),
            "sql_calls": round(summary.per_question(summary.sql_calls), 4),
            "prompt_tokens": round(summary.per_question(summary.prompt_tokens), 1),
            "completion_tokens": round(summary.per_question(summary.completion_tokens), 1),
        },
        "fallbacks": summary.fallbacks,
        "fallback_correct": summary.fallback_correct,
        "workers": summary.workers,
        "workers_from": summary.workers_from,
        "by_db": {k: v.to_dict() for k, v in summary.by_db.items()},
        "by_kind": {k: v.to_dict() for k, v in summary.by_kind.items()},
    }


def _rows(title: str, tallies: Iterable[tuple[str, Tally]], width: int) -> list[str]:
    lines = [title] if title else []
    for name, t in tallies:
        label = f"  {name}" if title else name
        lines.append(
            f"{label:<{width}} {t.total:>6} {t.answered:>9} {t.correct:>8} "
            f"{t.accuracy:>9.1%} {t.precision:>10.1%} {t.correct_any_order:>8} "
            f"{t.accuracy_any_order:>9.1%} {t.precision_any_order:>10.1%}"
        )
    return lines


def format_summary(summary: Summary) -> str:
    """The human summary: headline, by database, by kind, time and LLM usage."""
    names = [*summary.by_db, *summary.by_kind, "all"]
    width = max(24, *(len(n) + 3 for n in names))
    left_out = []
    if summary.no_database:
        left_out.append(f"{summary.no_database} without a database")
    if summary.gold_errors:
        left_out.append(f"{summary.gold_errors} whose gold SQL fails")
    lines = [
        f"dataset   {summary.dataset} ({summary.questions} questions)",
        f"engine    {summary.engine}",
        f"scored    {summary.overall.total}"
        + (f" (left out: {', '.join(left_out)})" if left_out else ""),
        "",
        f"{'':<{width}} {'':>6} {'':>9} {'strict column order':>29} "
        f"{'any column order (test-suite)':>29}",
        f"{'':<{width}} {'total':>6} {'answered':>9} {'correct':>8} {'accuracy':>9} "
        f"{'precision':>10} {'correct':>8} {'accuracy':>9} {'precision':>10}",
        *_rows("", [("all", summary.overall)], width),
    ]
    if summary.by_db:
        lines += ["", *_rows("by database", summary.by_db.items(), width)]
    if summary.by_kind:
        lines += ["", *_rows("by kind", summary.by_kind.items(), width)]
    rate = summary.questions / summary.wall_time if summary.wall_time > 0 else 0.0
    lines += [
        "",
        f"time      {summary.wall_time:.1f} s wall ({summary.build_time:.1f} s preparing "
        f"databases), {rate:.1f} questions/s; latency p50 {summary.latency_p50 * 1000:.0f} ms, "
        f"p95 {summary.latency_p95 * 1000:.0f} ms",
    ]
    if summary.workers:
        lines.append(f"workers   {summary.workers} questions at once ({summary.workers_from})")
    if summary.errors:
        lines.append(f"errors    {summary.errors} scored questions ended in an error "
                     "(see --out for each)")
    if summary.fallbacks:
        lines.append(f"fallbacks {summary.fallbacks} questions answered by the offline engine "
                     f"because the LLM failed ({summary.fallback_correct} right); counted as "
                     "not answered")
    if summary.llm_calls:
        per = summary.per_question
        lines.append(f"llm       {summary.llm_calls} calls, {summary.prompt_tokens} prompt + "
                     f"{summary.completion_tokens} completion tokens; {summary.cached_share:.0%} "
                     "of prompt tokens from the server's prefix cache")
        lines.append(f"per q     {per(summary.llm_calls):.2f} LLM calls, "
                     f"{per(summary.sql_calls):.2f} SQL calls, "
                     f"{per(summary.prompt_tokens):.0f} prompt tokens "
                     f"({per(summary.prompt_tokens - summary.cached_tokens):.0f} not cached)")
    return "\n".join(lines)


class ReportWriter:
    """Writes the per-question JSONL in dataset order, each line as soon as its turn comes
    (so a long LLM run that is interrupted keeps what it finished)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = path.open("w", encoding="utf-8")
        self._pending: dict[int, QuestionResult] = {}
        self._next = 0
        self._lock = threading.Lock()

    def add(self, index: int, result: QuestionResult) -> None:
        with self._lock:
            self._pending[index] = result
            while self._next in self._pending:
                row = self._pending.pop(self._next).to_dict()
                self._fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
                self._next += 1
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            for index in sorted(self._pending):  # after an interruption: what finished
                row = self._pending[index].to_dict()
                self._fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            self._pending.clear()
            self._fh.close()


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """A plain-text progress bar on stderr: redrawn in place (``\\r``) on a terminal, a line
    every 10% (or every 30 s) otherwise."""

    BAR = 24

    def __init__(self, total: int, stream: IO[str] | None = None, *, label: str = "eval") -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty()) if callable(isatty) else False
        self.done = self.scored = self.correct = 0
        self.start = time.monotonic()
        self._last_draw = self.start
        self._next_step = 1

    def update(self, result: QuestionResult) -> None:
        self.done += 1
        if result.scored:
            self.scored += 1
            self.correct += int(result.correct)
        now = time.monotonic()
        if self.tty:
            if now - self._last_draw >= 0.1 or self.done == self.total:
                self._write("\r" + self.line() + "\x1b[K")
                self._last_draw = now
            return
        step = self.done * 10 // max(self.total, 1)
        if step >= self._next_step or now - self._last_draw >= 30 or self.done == self.total:
            self._next_step = step + 1
            self._last_draw = now
            self._write(self.line() + "\n")

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        fraction = self.done / self.total if self.total else 1.0
        filled = int(self.BAR * fraction)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        accuracy = f"{self.correct / self.scored:.1%}" if self.scored else "-"
        return (
            f"{self.label} [{'#' * filled}{'.' * (self.BAR - filled)}] {self.done}/{self.total} "
            f"correct {self.correct}/{self.scored} ({accuracy}) {rate:.1f} q/s "
            f"eta {_duration(eta)}"
        )

    def close(self) -> None:
        if self.tty and self.done:
            self._write("\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

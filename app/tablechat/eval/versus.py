"""``tablechat eval --vs classic``: tablechat's LLM engine beside LangChain's classic SQL chain.

Both systems get the same questions, the same database files, the same model on the same
server, the same temperature and as many questions at once (the server's slots unless
``--workers`` says); both are scored by the same harness (``harness.py``: gold result, row
comparison, ties, column order). Per system: execution accuracy, invalid SQL (no result: the
final query is missing, refused or fails to run), LLM and SQL calls per question, prompt tokens
per question and the share the server's prefix cache served, and the median seconds per
question.

A ``gguf:`` URL is started once here (llama.cpp in-process) and both systems talk to it over
HTTP, so they share one server and its prefix cache.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..backends import GGUF_PREFIX, probe_backend
from ..backends.embedded import EMBEDDED_N_CTX, gguf_path, start_server
from ..config import load_settings
from ..errors import TableChatError
from .classic import ENGINE as CLASSIC
from .classic import predict_all
from .datasets import Dataset, Question
from .harness import (
    SCORED,
    EvalError,
    EvalOptions,
    EvalRun,
    QuestionResult,
    database_paths,
    resolve_workers,
    run_eval,
)
from .report import Progress, summarize

SYSTEMS = ("classic",)
OURS = "tablechat"


@dataclass(frozen=True, slots=True)
class Figures:
    """One system's row of the comparison."""

    system: str
    scored: int
    correct: int
    accuracy: float
    correct_any_order: int
    invalid_sql: int  # scored questions with no result (and not a fallback)
    invalid_rate: float
    fallbacks: int  # answered by the offline engine because the LLM failed
    llm_calls: float  # per scored question, and so on
    sql_calls: float
    prompt_tokens: float
    cached_share: float
    completion_tokens: float
    median_seconds: float
    wall_time: float

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def figures(system: str, run: EvalRun) -> Figures:
    """The comparison's figures for one run."""
    s = summarize(run)
    scored = [r for r in run.results if r.status == SCORED]
    invalid = sum(not r.answered and not r.fallback for r in scored)
    latencies = [r.latency for r in scored]
    total = s.overall.total
    return Figures(
        system=system, scored=total, correct=s.overall.correct, accuracy=s.overall.accuracy,
        correct_any_order=s.overall.correct_any_order, invalid_sql=invalid,
        invalid_rate=invalid / total if total else 0.0, fallbacks=s.fallbacks,
        llm_calls=s.per_question(s.llm_calls), sql_calls=s.per_question(s.sql_calls),
        prompt_tokens=s.per_question(s.prompt_tokens), cached_share=s.cached_share,
        completion_tokens=s.per_question(s.completion_tokens),
        median_seconds=statistics.median(latencies) if latencies else 0.0,
        wall_time=run.wall_time,
    )


def format_versus(rows: list[Figures], *, dataset: str, workers: int, workers_from: str,
                  model: str) -> str:
    """The comparison as a table: one column per system."""
    measures: list[tuple[str, Callable[[Figures], str]]] = [
        ("questions scored", lambda f: str(f.scored)),
        ("execution accuracy", lambda f: f"{f.accuracy:.1%} ({f.correct})"),
        ("  any column order", lambda f: f"{f.correct_any_order / max(1, f.scored):.1%} "
                                         f"({f.correct_any_order})"),
        ("invalid SQL (no result)", lambda f: f"{f.invalid_rate:.1%} ({f.invalid_sql})"),
        ("offline fallbacks", lambda f: str(f.fallbacks)),
        ("LLM calls / question", lambda f: f"{f.llm_calls:.2f}"),
        ("SQL calls / question", lambda f: f"{f.sql_calls:.2f}"),
        ("prompt tokens / question", lambda f: f"{f.prompt_tokens:,.0f}"),
        ("  from the prefix cache", lambda f: f"{f.cached_share:.0%}"),
        ("completion tokens / question", lambda f: f"{f.completion_tokens:,.0f}"),
        ("seconds / question (median)", lambda f: f"{f.median_seconds:.2f}"),
        ("wall time (s)", lambda f: f"{f.wall_time:.1f}"),
    ]
    width = max(len(name) for name, _ in measures) + 2
    cols = [max(12, len(f.system) + 2) for f in rows]
    lines = [f"dataset   {dataset}", f"model     {model}",
             f"workers   {workers} questions at once ({workers_from})", "",
             f"{'':<{width}}" + "".join(f"{f.system:>{c}}"
                                        for f, c in zip(rows, cols, strict=True))]
    for name, cell in measures:
        lines.append(f"{name:<{width}}" + "".join(f"{cell(f):>{c}}"
                                                  for f, c in zip(rows, cols, strict=True)))
    return "\n".join(lines)


@contextlib.contextmanager
def serving(url: str) -> Iterator[str]:
    """The HTTP URL of the server both systems use: ``url`` itself, or, for ``gguf:``, a
    llama.cpp server started here for the run (one slot, ``TABLECHAT_THREADS`` threads)."""
    if not url.startswith(GGUF_PREFIX):
        yield url
        return
    settings = load_settings(llm_url=url)
    try:
        server = start_server(gguf_path(url), n_ctx=settings.max_model_len or EMBEDDED_N_CTX,
                              threads=settings.threads)
    except TableChatError as exc:
        raise EvalError(str(exc)) from exc
    try:
        yield str(server.listening_address).rstrip("/") + "/v1"
    finally:
        del server


@dataclass(slots=True)
class Versus:
    """Both runs of a comparison."""

    ours: EvalRun
    theirs: EvalRun
    model: str
    workers: int
    workers_from: str

    def figures(self) -> list[Figures]:
        return [figures(OURS, self.ours), figures(CLASSIC, self.theirs)]


def run_versus(dataset: Dataset, options: EvalOptions, *,
               progress: Callable[[str, int], Callable[[QuestionResult], None] | None]
               | None = None) -> Versus:
    """Ask every question with the classic chain, then with tablechat (``--engine llm``),
    then score the classic answers. ``progress(label, total)`` gives a per-question callback."""
    url = options.llm_url or load_settings().llm_url
    if not url:
        raise EvalError("--vs classic needs an LLM server: pass --llm-url or set "
                        "TABLECHAT_LLM_URL")
    with serving(url) as http_url:
        settings = load_settings(llm_url=http_url, llm_model=options.llm_model)
        backend, info = probe_backend(settings)
        if not info.reachable:
            raise EvalError(f"the LLM server at {url} is unreachable: {info.error}")
        model = settings.llm_model or (info.models[0] if info.models else "")
        workers, workers_from = resolve_workers(options, backend.slots(info))
        paths = database_paths(dataset, options)
        tick = progress(f"{CLASSIC} asking", len(dataset.questions)) if progress else None

        def asked(q: Question) -> None:
            if tick is not None:
                tick(QuestionResult(q.id, q.db_id, q.question, q.gold_sql, q.kind,
                                    status="asked"))

        # the classic chain first, alone: DuckDB will not open a file twice in one process
        # with different settings (see classic.py)
        start = time.perf_counter()
        try:
            predictions = predict_all(dataset.questions, paths, backend.build_model(model),
                                      workers=workers, progress=asked)
        except TableChatError as exc:
            raise EvalError(str(exc)) from exc
        asking = time.perf_counter() - start
        same = replace(options, llm_url=http_url, llm_model=model)
        # tablechat finds its workers itself (run_eval), as `tablechat eval` does
        ours = run_eval(dataset, replace(same, engine="llm"),
                        progress=progress(OURS, len(dataset.questions)) if progress else None)

        def predict(q: Question) -> Any:
            return predictions[q.id].answer

        theirs = run_eval(dataset, replace(same, engine=CLASSIC, predict=predict,
                                           workers=workers))
    for result in theirs.results:  # the time the chain took, not the scoring's
        if result.id in predictions:
            result.latency = predictions[result.id].latency
    theirs.wall_time += asking
    theirs.workers, theirs.workers_from = workers, workers_from
    return Versus(ours, theirs, model, workers, workers_from)


def cmd_versus(args: argparse.Namespace, dataset: Dataset, options: EvalOptions) -> int:
    """``tablechat eval --vs classic``: run both, print the comparison (``--json``: one line;
    ``--out``: each system's per-question lines, with a ``system`` field)."""
    bars: list[Progress] = []

    def progress(label: str, total: int) -> Callable[[QuestionResult], None] | None:
        if args.no_progress:
            return None
        for bar in bars:
            bar.close()
        bars.append(Progress(total, sys.stderr, label=label))
        return bars[-1].update

    try:
        versus = run_versus(dataset, options, progress=progress)
    except EvalError as exc:
        print(f"tablechat eval: {exc}", file=sys.stderr)
        return 1
    finally:
        for bar in bars:
            bar.close()
    rows = versus.figures()
    human = format_versus(rows, dataset=dataset.name, workers=versus.workers,
                          workers_from=versus.workers_from, model=versus.model)
    if args.out is not None:
        with args.out.open("w", encoding="utf-8") as out:
            for system, run in ((OURS, versus.ours), (CLASSIC, versus.theirs)):
                for result in run.results:
                    line = {"system": system, **result.to_dict()}
                    out.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
        print(f"per-question report: {args.out}", file=sys.stderr)
    if args.json:
        print(human, file=sys.stderr)
        print(json.dumps({"dataset": dataset.name, "vs": CLASSIC, "model": versus.model,
                          "workers": versus.workers, "workers_from": versus.workers_from,
                          "systems": {f.system: f.to_dict() for f in rows}},
                         ensure_ascii=False))
    else:
        print(human)
    return 0


__all__ = ["SYSTEMS", "Figures", "Versus", "cmd_versus", "figures", "format_versus",
           "run_versus", "serving"]

"""Run a question set through an engine and score it by execution accuracy.

The harness is a client of the Python API: each database is opened once per run with
:func:`tablechat.connect` and shared by the worker threads (``TableChat`` gives every thread its
own DuckDB cursor). Engines:

- ``offline``: ``TableChat.ask`` with no LLM (the offline engine, if installed);
- ``llm``: ``TableChat.ask`` with an LLM server;
- ``gold``: the gold SQL through ``TableChat.run_sql`` (guard + sandboxed execution), which
  checks the harness itself: every question whose gold runs must score;
- ``classic``: answers made ahead by another system (LangChain's classic SQL chain,
  ``classic.py``), given as ``EvalOptions.predict`` and scored exactly as tablechat's own.

With ``--engine llm`` an answer the offline engine gave because the LLM failed (a fallback) is
not the LLM's: it counts as not answered, and is reported as a fallback of its own. Questions
run as many at a time as the LLM server has slots (``LLMBackend.slots``) unless ``workers``
says otherwise.

The gold result comes from the same sandboxed database, executed directly (no guard, no cap).
When a sorted gold result and the prediction differ only among rows with equal sort keys, the
prediction is right (``ties.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import events as ev
from ..answer import Answer
from ..api import connect
from ..core import TableChat
from ..errors import TableChatError
from ..offline import OfflineEngine
from .compare import (
    Comparison,
    column_permutations,
    compare_results,
    has_top_level_order_by,
    permute,
)
from .datasets import (
    DatabaseBuildError,
    DatabaseSource,
    Dataset,
    Question,
    default_cache_dir,
    materialize,
)
from .ties import compare_with_ties, order_key_query

ENGINES = ("offline", "llm", "gold")
DEFAULT_WORKERS = 4  # questions at once when neither the options nor the server say
EVAL_MAX_ROWS = 100_000  # TableChat's row cap during eval: results are compared whole
GOLD_MAX_ROWS = 10_000_000

# status of a question in the report
SCORED, GOLD_ERROR, NO_DATABASE = "scored", "gold_error", "no_database"


class EvalError(Exception):
    """The run cannot start (e.g. the LLM server is unreachable)."""


@dataclass(slots=True)
class QuestionResult:
    """One line of the ``--out`` report."""

    id: str
    db: str
    question: str
    gold_sql: str
    kind: str
    status: str = SCORED
    predicted_sql: str | None = None
    correct: bool = False  # strict: columns in the gold order
    correct_any_order: bool = False  # columns in any order (Spider's test-suite rule)
    answered: bool = False
    error: str | None = None
    reason: str | None = None  # why a prediction was judged wrong
    engine: str | None = None  # which engine answered (TableChat's Answer.engine)
    text: str | None = None  # the engine's words when it gave no result
    latency: float = 0.0
    confidence: float | None = None  # the offline engine's score of its reading (0-1)
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served from the server's prefix cache
    sql_calls: int = 0  # LLM calls that wrote SQL (1 + repairs)
    # --engine llm: the offline engine answered because the LLM failed; such an answer is not
    # the LLM's (answered/correct stay false) and is judged on its own (fallback_correct)
    fallback: bool = False
    fallback_correct: bool = False

    @property
    def scored(self) -> bool:
        return self.status == SCORED

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gold_sql"] = self.gold_sql or None
        data["scored"] = self.scored
        return data


@dataclass(slots=True)
class EvalOptions:
    engine: str = "offline"
    workers: int | None = None  # None: the LLM server's slots (--engine llm), else 4
    llm_url: str | None = None
    llm_model: str | None = None
    cache_dir: Path | None = None
    max_rows: int = EVAL_MAX_ROWS
    # the offline engine's confidence threshold for this run (None: the engine's own);
    # ``--split`` runs at 0 and applies thresholds afterwards (split.py)
    offline_threshold: float | None = None
    memory: Callable[[str], Any] | None = None  # db_id → verified examples (eval/memory.py)
    # engine "classic": the answer another system gave to a question (eval/classic.py)
    predict: Callable[[Question], Answer] | None = None


@dataclass(slots=True)
class EvalRun:
    dataset: Dataset
    options: EvalOptions
    results: list[QuestionResult] = field(default_factory=list)
    wall_time: float = 0.0
    build_time: float = 0.0
    workers: int = 0  # questions run at once
    workers_from: str = ""  # why that many: "--workers", "server slots", "default"


class _Databases:
    """Each database materialized and opened once per run, shared by every worker."""

    def __init__(self, dataset: Dataset, options: EvalOptions) -> None:
        self._dataset = dataset
        self._options = options
        self._paths: dict[str, Path] = {}
        self._errors: dict[str, str] = {}
        self._open: dict[str, TableChat] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def build(self, sources: list[DatabaseSource], pool: ThreadPoolExecutor) -> None:
        cache = self._options.cache_dir or default_cache_dir()

        def one(source: DatabaseSource) -> tuple[str, Path | None, str | None]:
            try:
                return source.db_id, materialize(source, cache, self._dataset.path), None
            except (DatabaseBuildError, OSError, TableChatError) as exc:
                return source.db_id, None, str(exc)

        for db_id, path, error in pool.map(one, sources):
            if path is not None:
                self._paths[db_id] = path
            else:
                self._errors[db_id] = error or "cannot build the database"

    def path(self, db_id: str) -> Path | None:
        """The database file of ``db_id``, None when it could not be built."""
        return self._paths.get(db_id)

    def missing_reason(self, db_id: str) -> str | None:
        if db_id in self._paths:
            return None
        return self._errors.get(db_id, f"database {db_id!r} is not available in this dataset")

    def get(self, db_id: str) -> TableChat:
        with self._guard:
            lock = self._locks.setdefault(db_id, threading.Lock())
        with lock:
            tc = self._open.get(db_id)
            if tc is None:
                tc = self._connect(self._paths[db_id])
                from .memory import attach  # memory only with --memory (eval/memory.py)

                attach(tc, self._options.memory(db_id) if self._options.memory else None)
                self._open[db_id] = tc
            return tc

    def _connect(self, path: Path) -> TableChat:
        opts = self._options
        if opts.engine == "llm":
            return connect(path, llm=opts.llm_url, llm_model=opts.llm_model,
                           max_rows=opts.max_rows)
        # offline and gold: no LLM, whatever TABLECHAT_LLM_URL says ("" reads as unset)
        tc = connect(path, llm_url="", max_rows=opts.max_rows)
        engine = tc._offline  # the eval is part of the package: it may set the threshold
        if opts.offline_threshold is not None and isinstance(engine, OfflineEngine):
            engine.threshold = opts.offline_threshold
        return tc

    def close(self) -> None:
        with self._guard:
            for tc in self._open.values():
                tc.close()
            self._open.clear()


def _answer(tc: TableChat, question: Question, options: EvalOptions) -> Answer:
    if options.predict is not None:
        return options.predict(question)
    if options.engine == "gold":
        try:
            return tc.run_sql(question.gold_sql)
        except TableChatError as exc:
            answer = Answer(question=question.gold_sql, engine="sql")
            answer.error, answer.error_type = str(exc), type(exc).__name__
            return answer
    return tc.ask(question.question)


def _sql_calls(answer: Answer) -> int:
    """The attempts at writing SQL: the agent's ``write_sql`` steps (a failed repair loop has no
    SQL event to count), or the attempts another system reports. The offline engine and the
    gold SQL make no LLM call; neither does a fallback's answer."""
    if answer.engine in ("offline", "sql"):
        return 0
    steps = sum(isinstance(e, ev.Status) and e.step == "write_sql" for e in answer.events)
    return steps or answer.attempts


def _predicted_rows(tc: TableChat, answer: Answer) -> list[tuple[Any, ...]]:
    """The prediction's whole result: the answer's rows, or, when the row cap cut them, its
    query as written (``Answer.source_sql``) run again through the guard with the gold cap."""
    if not answer.truncated:
        return answer.rows
    assert answer.source_sql is not None
    checked = tc.check_sql(answer.source_sql, max_rows=GOLD_MAX_ROWS)
    return tc.database.execute(checked.sql, max_rows=GOLD_MAX_ROWS).rows


def evaluate_question(dbs: _Databases, question: Question, options: EvalOptions
                      ) -> QuestionResult:
    result = QuestionResult(question.id, question.db_id, question.question, question.gold_sql,
                            question.kind)
    missing = (
        f"database {question.db_id!r} is not available (db_available: false)"
        if not question.db_available else dbs.missing_reason(question.db_id)
    )
    if missing is not None:
        note = f"; {question.note}" if question.note else ""
        result.status, result.error = NO_DATABASE, missing + note
        return result
    if not question.gold_sql.strip():
        result.status, result.error = GOLD_ERROR, "the dataset gives no gold SQL"
        return result
    try:
        tc = dbs.get(question.db_id)
    except TableChatError as exc:
        result.status, result.error = NO_DATABASE, f"cannot open the database: {exc}"
        return result
    try:
        gold = tc.database.execute(question.gold_sql, max_rows=GOLD_MAX_ROWS)
    except TableChatError as exc:
        result.status, result.error = GOLD_ERROR, f"gold SQL failed: {exc}"
        return result
    start = time.perf_counter()
    try:
        answer = _answer(tc, question, options)
    except TableChatError as exc:  # e.g. a question the API refuses as input
        result.latency = time.perf_counter() - start
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    result.latency = time.perf_counter() - start
    result.predicted_sql = answer.sql
    result.engine = answer.engine or None
    result.confidence = answer.confidence
    result.llm_calls = answer.usage.llm_calls
    result.prompt_tokens = answer.usage.prompt_tokens
    result.completion_tokens = answer.usage.completion_tokens
    result.cached_tokens = answer.usage.cached_tokens
    result.sql_calls = _sql_calls(answer)
    result.fallback = options.engine == "llm" and answer.engine == "offline"
    result.error = answer.error
    if answer.error is not None or answer.sql is None:
        if answer.text and answer.sql is None:
            result.text = answer.text[:300]
        return result
    try:
        predicted = _predicted_rows(tc, answer)
    except TableChatError as exc:
        result.error = f"re-running the predicted SQL failed: {exc}"
        return result
    result.answered = True
    ordered = has_top_level_order_by(question.gold_sql)

    def judge(rows: list[tuple[Any, ...]]) -> Comparison:
        verdict = compare_results(gold.rows, rows, ordered=ordered)
        if ordered and not verdict.equal:
            verdict = _with_ties(tc, question.gold_sql, rows) or verdict
        return verdict

    verdict = judge(predicted)
    result.correct = result.correct_any_order = verdict.equal
    result.reason = verdict.reason or None
    if not verdict.equal:
        result.correct_any_order = any(
            judge(permute(predicted, order)).equal
            for order in column_permutations(gold.rows, predicted))
    if result.fallback:  # the offline engine's answer, not the LLM's
        result.fallback_correct = result.correct
        result.answered = result.correct = result.correct_any_order = False
    return result


def _with_ties(tc: TableChat, gold_sql: str, predicted: list[tuple[Any, ...]]
               ) -> Comparison | None:
    """The ordered comparison again, allowing any order among rows with equal sort keys."""
    keyed = order_key_query(gold_sql, tc.database.dialect)
    if keyed is None:
        return None
    try:
        rows = tc.database.execute(keyed.sql, max_rows=GOLD_MAX_ROWS).rows
    except TableChatError:
        return None
    verdict = compare_with_ties(rows, keyed.keys, predicted, limit=keyed.limit)
    return verdict if verdict.equal else None


def _evaluate_safely(dbs: _Databases, question: Question, options: EvalOptions
                     ) -> QuestionResult:
    """Like :func:`evaluate_question`, but a bug costs one question, not the whole run."""
    try:
        return evaluate_question(dbs, question, options)
    except Exception as exc:
        result = QuestionResult(question.id, question.db_id, question.question,
                                question.gold_sql, question.kind)
        result.error = f"internal error: {type(exc).__name__}: {exc}"
        return result


def _check_llm(dbs: _Databases, dataset: Dataset, options: EvalOptions) -> int | None:
    """Stop the run when ``--engine llm`` has no server; the server's slots (None: unknown)."""
    if options.engine != "llm":
        return None
    first = next((q.db_id for q in dataset.questions
                  if q.db_available and dbs.missing_reason(q.db_id) is None), None)
    if first is None:
        return None
    tc = dbs.get(first)
    if not tc.settings.llm_url:
        raise EvalError("--engine llm needs an LLM server: pass --llm-url or set "
                        "TABLECHAT_LLM_URL")
    info = tc.server_info(refresh=True)
    if info is None or not info.reachable:
        detail = f": {info.error}" if info is not None and info.error else ""
        raise EvalError(f"the LLM server at {tc.settings.llm_url} is unreachable{detail}")
    backend = tc.llm.backend
    return backend.slots(info) if backend is not None else None


def resolve_workers(options: EvalOptions, slots: int | None) -> tuple[int, str]:
    """Questions at once: an explicit number wins, then the server's slots (a one-slot server
    given four questions at once made every call four times slower; issue 13)."""
    if options.workers is not None:
        return options.workers, "--workers"
    if slots is not None:
        return max(1, slots), "server slots"
    return DEFAULT_WORKERS, "default"


def _sources(dataset: Dataset) -> list[DatabaseSource]:
    needed = {q.db_id for q in dataset.questions if q.db_available}
    return [s for db_id, s in dataset.databases.items() if db_id in needed]


def database_paths(dataset: Dataset, options: EvalOptions) -> dict[str, Path]:
    """The DuckDB file of each database the questions need (built or taken from the cache
    as :func:`run_eval` does); a database that cannot be built is left out."""
    dbs = _Databases(dataset, options)
    with ThreadPoolExecutor(max_workers=options.workers or DEFAULT_WORKERS) as pool:
        dbs.build(_sources(dataset), pool)
    return {db_id: path for db_id in dataset.db_ids if (path := dbs.path(db_id)) is not None}


def run_eval(
    dataset: Dataset,
    options: EvalOptions | None = None,
    *,
    progress: Callable[[QuestionResult], None] | None = None,
    on_result: Callable[[int, QuestionResult], None] | None = None,
) -> EvalRun:
    """Evaluate every question of ``dataset``; results come back in dataset order.

    ``progress`` is called (on the calling thread) as each question finishes; ``on_result``
    with its index in the dataset, also as it finishes.
    """
    options = options or EvalOptions()
    if options.engine not in ENGINES and options.predict is None:
        raise EvalError(f"unknown engine {options.engine!r}; choose one of {', '.join(ENGINES)}")
    if options.workers is not None and options.workers < 1:
        raise EvalError("--workers must be at least 1")
    run = EvalRun(dataset, options)
    start = time.perf_counter()
    dbs = _Databases(dataset, options)
    sources = _sources(dataset)
    results: list[QuestionResult | None] = [None] * len(dataset.questions)
    try:
        with ThreadPoolExecutor(max_workers=options.workers or DEFAULT_WORKERS,
                                thread_name_prefix="tablechat-eval-build") as builders:
            dbs.build(sources, builders)
        run.build_time = time.perf_counter() - start
        run.workers, run.workers_from = resolve_workers(options,
                                                     _check_llm(dbs, dataset, options))
        with ThreadPoolExecutor(max_workers=run.workers,
                                thread_name_prefix="tablechat-eval") as pool:
            futures = {
                pool.submit(_evaluate_safely, dbs, q, options): i
                for i, q in enumerate(dataset.questions)
            }
            try:
                for future in as_completed(futures):
                    index = futures[future]
                    result = future.result()
                    results[index] = result
                    if on_result is not None:
                        on_result(index, result)
                    if progress is not None:
                        progress(result)
            except BaseException:
                for pending in futures:
                    pending.cancel()
                raise
    finally:
        dbs.close()
    run.results = [r for r in results if r is not None]
    run.wall_time = time.perf_counter() - start
    return run

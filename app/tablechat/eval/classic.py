"""LangChain's classic text-to-SQL chain, run as its users run it (``tablechat eval --vs classic``).

``create_sql_query_chain(llm, db)`` (``langchain-classic``) over ``SQLDatabase``
(``langchain-community``, on SQLAlchemy with the ``duckdb-sqlalchemy`` dialect) writes one query
per question from the database's table info (each table's ``CREATE TABLE`` and three of its
rows); the query runs through ``SQLDatabase.run`` on the same DuckDB file, read-only. There is
no guard, no repair and no answer sentence: one LLM call per question.

The chat model is the one tablechat builds for the same server (``LLMBackend.build_model``:
same model, temperature, reply limit and timeouts), so the two systems differ only in what they
do with it. Token usage comes from each reply's ``usage`` (a callback), as tablechat's does.

DuckDB refuses a second connection to a file opened in the same process with another
configuration (tablechat's sandbox sets limits), so the classic answers are all made first, with
only the chain's connections open, and then scored by the harness (``EvalOptions.predict``).
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.outputs import LLMResult

from ..answer import Answer, Usage
from ..errors import ConfigurationError
from ..llm import cached_of, usage_of
from .datasets import Question

ENGINE = "classic"
# duckdb-sqlalchemy pins duckdb<2 but works with 2.0: --no-deps keeps tablechat's duckdb
EXTRAS = ("pip install langchain-classic langchain-community && "
          "pip install --no-deps duckdb-sqlalchemy")


class UsageCounter(BaseCallbackHandler):
    """Counts a chain's LLM calls and the tokens the server reported for each."""

    def __init__(self) -> None:
        self.usage = Usage()
        self._lock = threading.Lock()

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        """One call ended: add its reported tokens (prompt, completion, cached)."""
        prompt = completion = cached = 0
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                p, c = usage_of(message)
                prompt, completion, cached = prompt + p, completion + c, cached + cached_of(message)
        with self._lock:
            self.usage.add(prompt, completion, cached)


@dataclass(slots=True)
class Prediction:
    """The classic chain's answer to one question."""

    answer: Answer
    latency: float  # seconds: the chain's call and the query


class ClassicChain:
    """``create_sql_query_chain`` + ``SQLDatabase`` on one DuckDB file."""

    def __init__(self, llm: BaseChatModel, path: Path) -> None:
        try:
            with warnings.catch_warnings():  # "langchain-community is being sunset"
                warnings.simplefilter("ignore", DeprecationWarning)
                from langchain_classic.chains import create_sql_query_chain
                from langchain_community.utilities import SQLDatabase
            from sqlalchemy import create_engine
        except ImportError as exc:
            raise ConfigurationError(f"--vs classic needs LangChain's classic chain: {EXTRAS}"
                                     ) from exc
        try:
            self.engine = create_engine(f"duckdb:///{path}",
                                        connect_args={"read_only": True})
            self.db = SQLDatabase(self.engine)
        except Exception as exc:  # no dialect installed, or reflection failed
            raise ConfigurationError(f"SQLDatabase cannot open {path} ({type(exc).__name__}: "
                                     f"{exc}); {EXTRAS}") from exc
        self.chain = create_sql_query_chain(llm, self.db)

    def ask(self, question: str) -> Prediction:
        """Write the query, run it with ``SQLDatabase.run``; errors go into the answer."""
        counter = UsageCounter()
        answer = Answer(question=question, engine=ENGINE)
        start = time.perf_counter()
        try:
            sql = str(self.chain.invoke({"question": question},
                                        config={"callbacks": [counter]})).strip()
        except Exception as exc:  # the LLM call failed (timeout, server error)
            answer.error, answer.error_type = f"LLM: {type(exc).__name__}: {exc}", "llm"
        else:
            answer.attempts = 1
            if not sql:
                answer.error, answer.error_type = "no SQL in the reply", "invalid_sql"
            else:
                answer.source_sql = sql
                try:
                    result = self.db.run(sql, fetch="cursor")
                    rows = [tuple(row) for row in result.fetchall()]  # type: ignore[union-attr]
                except Exception as exc:  # what SQLDatabase.run raises for bad SQL
                    answer.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                    answer.error_type = "invalid_sql"
                else:
                    answer.sql, answer.rows = sql, rows
        answer.usage = counter.usage
        return Prediction(answer, time.perf_counter() - start)

    def close(self) -> None:
        """Close the chain's database connections."""
        self.engine.dispose()


def predict_all(questions: list[Question], paths: dict[str, Path], llm: BaseChatModel, *,
                workers: int, progress: Callable[[Question], None] | None = None
                ) -> dict[str, Prediction]:
    """The classic chain's answer to each question whose database is in ``paths`` (by id),
    ``workers`` at a time; one chain (and SQLDatabase) per database."""
    chains: dict[str, ClassicChain] = {}
    guard = threading.Lock()

    def chain_for(db_id: str) -> ClassicChain:
        with guard:  # reflection once per database
            if db_id not in chains:
                chains[db_id] = ClassicChain(llm, paths[db_id])
            return chains[db_id]

    def one(question: Question) -> tuple[str, Prediction]:
        prediction = chain_for(question.db_id).ask(question.question)
        if progress is not None:
            progress(question)
        return question.id, prediction

    wanted = [q for q in questions if q.db_id in paths and q.db_available and q.gold_sql]
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="classic") as pool:
            return dict(pool.map(one, wanted))
    finally:
        for chain in chains.values():
            chain.close()


__all__ = ["ENGINE", "ClassicChain", "Prediction", "UsageCounter", "predict_all"]

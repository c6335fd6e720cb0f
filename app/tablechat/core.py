"""TableChat: one connection to one database, answering questions through an engine.

Every front end (Python API, CLI, web UI, REST) is a client of this class and consumes the same
stream of typed events (``events.py``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel

from . import _loop
from . import events as ev
from .agent.context import QuestionContext, normalize_history
from .agent.sql_agent import SQLAgent
from .answer import Answer, Usage
from .chart import chart_spec
from .config import Settings
from .errors import (
    BadQuestionError,
    LLMUnavailableError,
    TableChatError,
    UnsafeSQLError,
    UserFacingError,
)
from .llm import ServerInfo, build_chat_model, model_name, probe_server
from .semantic import SemanticLayer
from .sql.database import Database
from .sql.guard import SQLGuard
from .sql.schema import SchemaSnapshot

PROBE_TTL_SECONDS = 30.0
NO_LLM_HELP = (
    "No LLM is configured, so I can only answer questions the offline engine understands. "
    "To answer anything, point tablechat at a vLLM server: start one with "
    "`vllm serve Qwen/Qwen2.5-Coder-7B-Instruct`, then set "
    "TABLECHAT_LLM_URL=http://127.0.0.1:8000/v1 (or pass --llm-url / llm=...)."
)


class Engine(Protocol):
    name: str

    def run(self, ctx: QuestionContext, usage: Usage) -> AsyncIterator[ev.Event]: ...


class NoLLMEngine:
    """Used when no LLM is reachable and no offline engine is installed: says how to fix that."""

    name = "offline"

    def __init__(self, reason: str = "") -> None:
        self.reason = reason

    async def run(self, ctx: QuestionContext, usage: Usage) -> AsyncIterator[ev.Event]:
        text = NO_LLM_HELP if not self.reason else f"{self.reason}. {NO_LLM_HELP}"
        yield ev.AnswerText(text=text, engine=self.name)


class TableChat:
    """Ask questions of one database. Build it with :func:`tablechat.connect`."""

    def __init__(
        self,
        database: Database,
        *,
        settings: Settings,
        llm: BaseChatModel | None = None,
        semantic: SemanticLayer | None = None,
        offline: Engine | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.semantic = semantic
        self._llm = llm
        self._offline = offline
        self._agent: SQLAgent | None = None
        self._server: ServerInfo | None = None
        self._probed_at = 0.0
        self._lock = threading.Lock()
        self._guards: dict[int, SQLGuard] = {}

    # -- schema and guard ---------------------------------------------------------------------
    def snapshot(self, session: str | None = None) -> SchemaSnapshot:
        base = self.database.snapshot()
        if self.semantic is not None:
            self.semantic.apply(base)
        extra = self.database.session_tables(session)
        return base.with_tables(extra) if extra else base

    def guard(self, snapshot: SchemaSnapshot | None = None) -> SQLGuard:
        snap = snapshot or self.snapshot()
        key = id(snap)
        guard = self._guards.get(key)
        if guard is None or guard.dialect != snap.dialect:
            guard = SQLGuard(
                snap.guard_schema(),
                dialect=snap.dialect,
                max_rows=self.settings.max_rows,
                allowed_qualifiers=(*self.database.qualifiers, "main"),
            )
            if snap is self.database.snapshot():
                self._guards = {key: guard}
        return guard

    # -- engines ------------------------------------------------------------------------------
    def server_info(self, *, refresh: bool = False) -> ServerInfo | None:
        """The configured LLM server's state (None when no server URL is configured)."""
        if not self.settings.llm_url:
            return None
        with self._lock:
            stale = time.monotonic() - self._probed_at > PROBE_TTL_SECONDS
            if self._server is None or refresh or (stale and not self._server.reachable):
                self._server = probe_server(
                    self.settings.llm_url,
                    self.settings.llm_api_key,
                    timeout=self.settings.llm_connect_timeout,
                )
                self._probed_at = time.monotonic()
            return self._server

    def _llm_agent(self) -> SQLAgent | None:
        """The LLM agent, or None when no LLM is configured or reachable."""
        if self._agent is not None:
            return self._agent
        model = self._llm
        structured = False
        if model is None:
            info = self.server_info()
            if info is None or not info.reachable:
                return None
            name = self.settings.llm_model or info.models[0]
            model = build_chat_model(self.settings, model=name)
            structured = self.settings.llm_structured_output and info.is_vllm
            if info.max_model_len and not self.settings.max_model_len:
                self.settings.max_model_len = info.max_model_len
        with self._lock:
            if self._agent is None:
                self._agent = SQLAgent(
                    model,
                    structured=structured,
                    model_label=model_name(model),
                    call_timeout=self.settings.llm_timeout,
                )
            return self._agent

    @property
    def engine_name(self) -> str:
        """'llm' when questions go to an LLM now, else 'offline'."""
        return "llm" if self._llm_agent() is not None else "offline"

    @property
    def model_label(self) -> str:
        agent = self._llm_agent()
        return agent.label if agent is not None else "offline"

    def _offline_engine(self, reason: str = "") -> Engine:
        return self._offline if self._offline is not None else NoLLMEngine(reason)

    # -- questions ----------------------------------------------------------------------------
    def _validate_question(self, question: Any) -> str:
        if not isinstance(question, str):
            raise BadQuestionError("the question must be text")
        text = question.strip()
        if not text:
            raise BadQuestionError("the question is empty: type a question about the data")
        limit = self.settings.max_question_chars
        if len(text) > limit:
            raise BadQuestionError(
                f"the question is too long ({len(text)} characters; the limit is {limit})"
            )
        return text

    def context(
        self, question: str, history: Any = None, *, session: str | None = None
    ) -> QuestionContext:
        snap = self.snapshot(session)
        return QuestionContext(
            question=question,
            history=normalize_history(history),
            database=self.database,
            snapshot=snap,
            guard=self.guard(snap),
            settings=self.settings,
            semantic=self.semantic,
            session=session,
        )

    async def stream(
        self, question: str, history: Any = None, *, session: str | None = None,
        usage: Usage | None = None,
    ) -> AsyncIterator[ev.Event]:
        """Answer ``question`` as an async stream of typed events, ending with ``Done``.

        Raises :class:`BadQuestionError` before the first event for an empty or too long
        question; any later failure arrives as an ``Error`` event.
        """
        text = self._validate_question(question)
        async for event in _loop.bridge(self._events(text, history, session, usage or Usage())):
            yield event

    async def _events(
        self, question: str, history: Any, session: str | None, usage: Usage
    ) -> AsyncIterator[ev.Event]:
        ok = True
        try:
            yield ev.Status(step="schema", message="reading schema")
            ctx = await asyncio.to_thread(self.context, question, history, session=session)
            agent = await asyncio.to_thread(self._llm_agent)
            if agent is None:
                reason = ""
                info = self.server_info()
                if info is not None and not info.reachable:
                    reason = f"The LLM server at {self.settings.llm_url} is unreachable"
                    yield ev.Status(step="fallback", message=f"{reason}; using the offline engine")
                async for event in self._offline_engine(reason).run(ctx, usage):
                    yield event
            else:
                try:
                    async for event in agent.run(ctx, usage):
                        yield event
                except LLMUnavailableError as exc:
                    if self._offline is None:
                        raise
                    yield ev.Status(step="fallback", message=f"{exc}; using the offline engine")
                    async for event in self._offline.run(ctx, usage):
                        yield event
        except TableChatError as exc:
            ok = False
            yield ev.Error(
                message=str(exc),
                error_type=type(exc).__name__,
                retryable=not isinstance(exc, UserFacingError),
            )
        except Exception as exc:  # a bug: report it without a traceback reaching the person
            ok = False
            yield ev.Error(message=f"internal error: {type(exc).__name__}: {exc}",
                           error_type="InternalError")
        yield ev.Done(ok=ok)

    async def aask(
        self, question: str, history: Any = None, *, session: str | None = None
    ) -> Answer:
        answer = Answer(question=question)
        async for event in self.stream(question, history, session=session, usage=answer.usage):
            answer.apply(event)
        return answer

    def ask(self, question: str, history: Any = None, *, session: str | None = None) -> Answer:
        """Answer ``question`` (blocking). Failures are in ``Answer.error``; bad input raises."""
        text = self._validate_question(question)
        answer = Answer(question=text)

        async def collect() -> None:
            async for event in self._events(text, history, session, answer.usage):
                answer.apply(event)

        _loop.run_sync(collect())
        return answer

    def run_sql(self, sql: str, *, session: str | None = None) -> Answer:
        """Run SQL a person wrote, through the same guard and sandbox.

        Raises :class:`UnsafeSQLError` when the guard refuses it, and the other SQL errors
        (invalid, execution, timeout) as they come.
        """
        snap = self.snapshot(session)
        checked = self.guard(snap).check(sql)
        result = self.database.execute(checked.sql, max_rows=self.settings.max_rows,
                                       session=session)
        answer = Answer(question=sql, sql=checked.sql, columns=result.columns, rows=result.rows,
                        truncated=result.truncated, engine="sql")
        answer.chart = chart_spec(result.columns, result.rows)
        answer.text = f"{len(result.rows)} rows" + (" (truncated)" if result.truncated else "")
        return answer

    def health(self) -> dict[str, Any]:
        """Database and LLM status, for /healthz, the UI and the CLI."""
        db: dict[str, Any] = {"ok": True, "name": self.database.name,
                              "dialect": self.database.dialect}
        try:
            db["tables"] = len(self.snapshot().tables)
        except TableChatError as exc:
            db = {"ok": False, "error": str(exc)}
        if self._llm is not None:
            llm: dict[str, Any] = {"configured": True, "reachable": True,
                                   "model": model_name(self._llm)}
        elif not self.settings.llm_url:
            llm = {"configured": False, "reachable": False, "model": None}
        else:
            info = self.server_info(refresh=True)
            assert info is not None
            llm = {"configured": True, "reachable": info.reachable, "url": self.settings.llm_url,
                   "model": self.settings.llm_model or (info.models[0] if info.models else None),
                   "error": info.error or None}
        engine = "llm" if llm["reachable"] else "offline"
        return {"database": db, "llm": llm, "engine": engine}

    def close(self) -> None:
        self.database.close()

    def __enter__(self) -> TableChat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["TableChat", "UnsafeSQLError"]

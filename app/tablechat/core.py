"""TableChat: one connection to one database, answering questions through an engine.

Every front end (Python API, CLI, web UI, REST) is a client of this class and consumes the same
stream of typed events (``events.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel

from . import _loop
from . import events as ev
from .agent.context import QuestionContext, normalize_history
from .agent.engine import LLMEngine
from .answer import Answer, Usage
from .backends import ServerInfo, failure_kind
from .chart import chart_spec
from .config import Settings
from .engines import LLMConnection
from .errors import (
    BadQuestionError,
    LLMUnavailableError,
    TableChatError,
    UnsafeSQLError,
    UploadError,
    UserFacingError,
)
from .export import Export, write_csv
from .redact import scrub
from .semantic import SemanticLayer
from .sql.database import Database
from .sql.guard import CheckedSQL, SQLGuard
from .sql.limits import SQLLimits
from .sql.schema import SchemaSnapshot, TableInfo

# for the person asking: how to connect an LLM is the admin's business, shown in the health
# view (/api/health, the UI's header), never in an answer (issue 12)
NO_LLM_HELP = (
    "I can only answer questions that need no language model, and none is available right "
    "now. Try a simpler question: a count, a total, a top 5 or a breakdown by one column."
)
FALLBACK_NOTE = "(Answered by the offline engine: the language model {what}.)"
FALLBACK_WHAT = {"connection": "is unreachable", "timeout": "did not answer in time"}


class Engine(Protocol):
    name: str

    def run(self, ctx: QuestionContext, usage: Usage) -> AsyncIterator[ev.Event]: ...


class NoLLMEngine:
    """Used when no LLM is reachable and no offline engine is installed: says what it can
    still answer (the fix is the admin's, shown in the health view)."""

    name = "offline"

    def __init__(self, reason: str = "") -> None:
        self.reason = reason

    async def run(self, ctx: QuestionContext, usage: Usage) -> AsyncIterator[ev.Event]:
        yield ev.AnswerText(text=NO_LLM_HELP, engine=self.name)


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
        memory: Any = None,
    ) -> None:
        self.database = database
        # verified examples (tablechat.memory.StoreMemory): few-shot examples for the LLM
        self.memory = memory
        self.settings = settings
        self.semantic = semantic
        self._llm = llm
        self._offline = offline
        self.llm = LLMConnection(settings, llm)  # probing, engine choice, going offline
        self._guards: dict[int, SQLGuard] = {}
        self._described: SchemaSnapshot | None = None

    # -- schema and guard ---------------------------------------------------------------------
    def snapshot(self, session: str | None = None) -> SchemaSnapshot:
        base = self.database.snapshot()
        if self.semantic is not None and base is not self._described:
            self.semantic.apply(base)  # once per snapshot, before any prompt is rendered
            self._described = base
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
                limits=SQLLimits.from_settings(self.settings),
            )
            if snap is self.database.snapshot():
                self._guards = {key: guard}
        return guard

    # -- engines ------------------------------------------------------------------------------
    def server_info(self, *, refresh: bool = False) -> ServerInfo | None:
        """The configured LLM server's state (None when no server URL is configured)."""
        return self.llm.server_info(refresh=refresh)

    @property
    def _agent(self) -> LLMEngine | None:
        return self.llm.agent

    def _llm_agent(self) -> LLMEngine | None:
        """The LLM engine, or None when no LLM is configured or reachable."""
        return self.llm.engine()

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
        self, question: str, history: Any = None, *, session: str | None = None,
        stream_tokens: bool = True,
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
            stream_tokens=stream_tokens,
            memory=self.memory,
        )

    async def stream(
        self, question: str, history: Any = None, *, session: str | None = None,
        usage: Usage | None = None, tokens: bool = True,
    ) -> AsyncIterator[ev.Event]:
        """Answer ``question`` as an async stream of typed events, ending with ``Done``.

        With ``tokens=False`` the answer sentence comes whole in the ``AnswerText`` event, with
        no ``Token`` events before it (the model is asked for one reply, not a stream): for a
        caller that shows nothing until the answer is complete.

        Raises :class:`BadQuestionError` before the first event for an empty or too long
        question; any later failure arrives as an ``Error`` event.
        """
        text = self._validate_question(question)
        events = self._events(text, history, session, usage or Usage(), stream_tokens=tokens)
        async for event in _loop.bridge(events):
            yield event

    async def _events(
        self, question: str, history: Any, session: str | None, usage: Usage,
        stream_tokens: bool = True,
    ) -> AsyncIterator[ev.Event]:
        ok = True
        try:
            yield ev.Status(step="schema", message="reading schema")
            # thread hops only for work that may block (first schema read, probing the server)
            if self.database.snapshot_cached:
                ctx = self.context(question, history, session=session,
                                   stream_tokens=stream_tokens)
            else:
                ctx = await _loop.in_thread(self.context, question, history, session=session,
                                            stream_tokens=stream_tokens)
            if self._agent is not None or (self._llm is None and not self.settings.llm_url):
                agent = self._agent
            else:
                agent = await _loop.in_thread(self._llm_agent)
            if agent is None:
                info = self.llm.server if self.settings.llm_url and self._llm is None else None
                if info is not None and not info.reachable:  # probed in _llm_agent, off-loop
                    reason = "the LLM server is unreachable"  # where and why: the health view
                    yield ev.Status(step="fallback",
                                    message="LLM server unreachable, answered offline")
                    async for event in self._fallback(ctx, usage, reason, "connection"):
                        yield event
                else:
                    yield ev.Status(step="engine", message="engine: offline (no LLM configured)")
                    async for event in self._offline_engine().run(ctx, usage):
                        yield event
            else:
                yield ev.Status(step="engine", message=f"engine: llm (model {agent.label})")
                shown = False  # once data or tokens reached the person, no fallback
                try:
                    async for event in agent.run(ctx, usage):
                        shown = shown or not isinstance(event, ev.Status)
                        yield event
                except LLMUnavailableError as exc:
                    await self.llm.failed(exc)
                    if shown or self._offline is None:
                        raise
                    what = "unreachable" if failure_kind(exc) == "connection" else "failed"
                    yield ev.Status(step="fallback",
                                    message=f"LLM server {what}, answered offline")
                    async for event in self._fallback(ctx, usage, str(exc),
                                                      failure_kind(exc)):
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

    async def _fallback(
        self, ctx: QuestionContext, usage: Usage, reason: str, kind: str = ""
    ) -> AsyncIterator[ev.Event]:
        """The offline engine's answer, its text saying in plain words why the LLM did not
        answer (``kind``: ``llm.failure_kind``); where and how to fix it is the health view's."""
        reason = scrub(reason)  # it ends up in the error text
        if self._offline is None:
            raise LLMUnavailableError(f"{reason[:1].upper()}{reason[1:]}; no offline engine is "
                                      "installed to answer instead")
        async for event in self._offline.run(ctx, usage):
            if isinstance(event, ev.AnswerText):
                note = FALLBACK_NOTE.format(what=FALLBACK_WHAT.get(kind, "failed"))
                event = ev.AnswerText(text=f"{event.text}\n\n{note}".strip(),
                                      engine=event.engine or self._offline.name)
            yield event

    async def _collect(self, answer: Answer, history: Any, session: str | None) -> Answer:
        # nobody reads the sentence piece by piece: one reply, not a stream of tokens
        async for event in self._events(answer.question, history, session, answer.usage,
                                        stream_tokens=False):
            answer.apply(event)
        return answer

    async def aask(
        self, question: str, history: Any = None, *, session: str | None = None
    ) -> Answer:
        """Answer ``question`` without blocking the caller's loop. As :meth:`ask`; the events
        are folded on the background loop, so only the answer crosses between threads."""
        answer = Answer(question=self._validate_question(question))
        return await _loop.run_async(self._collect(answer, history, session))

    def ask(self, question: str, history: Any = None, *, session: str | None = None) -> Answer:
        """Answer ``question`` (blocking). Failures are in ``Answer.error``; bad input raises."""
        answer = Answer(question=self._validate_question(question))
        return _loop.run_sync(self._collect(answer, history, session))

    def check_sql(
        self, sql: str, *, session: str | None = None, max_rows: int | None = -1
    ) -> CheckedSQL:
        """``sql`` through the guard of this database (with ``session``'s uploads), capped at
        ``max_rows`` rows (default: the ``max_rows`` setting; None: no cap). Raises
        :class:`UnsafeSQLError` or :class:`InvalidSQLError` when it refuses."""
        return self.guard(self.snapshot(session)).check(sql, max_rows=max_rows)

    def run_sql(self, sql: str, *, session: str | None = None) -> Answer:
        """Run SQL a person wrote, through the same guard and sandbox.

        Raises :class:`UnsafeSQLError` when the guard refuses it, and the other SQL errors
        (invalid, execution, timeout) as they come.
        """
        checked = self.check_sql(sql, session=session)
        result = self.database.execute(checked.sql, max_rows=self.settings.max_rows,
                                       session=session)
        answer = Answer(question=sql, sql=checked.sql, columns=result.columns, rows=result.rows,
                        truncated=result.truncated, engine="sql", source_sql=sql)
        answer.chart = chart_spec(result.columns, result.rows)
        answer.text = f"{len(result.rows)} rows" + (" (truncated)" if result.truncated else "")
        return answer

    def export_csv(self, sql: str, path: str | Path, *, session: str | None = None,
                   max_bytes: int | None = None) -> Export:
        """Run ``sql`` through the same guard and sandbox and write its whole result to a CSV
        file at ``path``: up to ``export_max_rows`` rows (``Export.truncated`` says when there
        were more), fetched and written in batches. For a result cut at ``max_rows``, pass the
        query as written (``SQL.source``), not the one that ran with the row cap. The file
        never holds more than ``max_bytes`` bytes, even while it is written.

        Raises as :meth:`run_sql` does, and :class:`ExportTooLargeError` past ``max_bytes``; a
        failed export leaves no file.
        """
        cap = self.settings.export_max_rows
        checked = self.check_sql(sql, session=session, max_rows=cap)
        with self.database.batches(checked.sql, session=session) as (columns, batches):
            return write_csv(path, columns, batches, max_rows=cap, max_bytes=max_bytes)

    def feedback(self, answer: Answer, *, good: bool | None = None, sql: str | None = None,
                 comment: str | None = None, principal: str | None = None,
                 session: str | None = None, history: Any = None) -> Any:
        """Keep a person's verdict on ``answer`` in the store (``TABLECHAT_STORE``): a vote
        (``good``), the right SQL (``sql``, checked by the guard) and/or a ``comment``, with
        the question, the conversation before it (``history``), the SQL that ran, the engine,
        model and prompt version, and who gave it (``principal``: a name, never a secret).
        A vote up or a correction makes the pair a verified example when the ``verifiers``
        policy allows. Returns the stored ``FeedbackRecord``; raises ``FeedbackError``."""
        from .store.feedback import record_feedback

        return record_feedback(self, answer, good=good, sql=sql, comment=comment,
                               principal=principal, session=session, history=history)

    # -- sessions: uploads --------------------------------------------------------------------
    def upload(self, session: str, filename: str, source: bytes | str | Path) -> TableInfo:
        """Make a CSV, Parquet or JSON file (its bytes or its path) a table only ``session`` sees.

        The table is named after the file (``sales 2024.csv`` → ``sales_2024``); a name taken by
        the database gets a suffix, and re-uploading a file replaces that session's table.
        Raises :class:`UploadError` for a file too large (``upload_max_mb``), of another kind,
        malformed or binary, or when the database takes no uploads (not DuckDB).
        """
        from .uploads import UploadLimits, read_upload, reserved_words, table_name

        register = getattr(self.database, "register_table", None)
        if register is None:
            raise UploadError(
                f"uploads need a DuckDB database; this one is {self.database.dialect}")
        if not session:
            raise UploadError("uploads need a session")
        frame = read_upload(filename, source, max_mb=self.settings.upload_max_mb,
                            limits=UploadLimits.from_settings(self.settings))
        taken = {t.lower() for t in self.database.snapshot().tables}
        name = table_name(filename, taken, reserved_words())
        info: TableInfo = register(session, name, frame)
        return info

    def end_session(self, session: str) -> None:
        """Forget a session's uploads (a closed browser tab, an API client done)."""
        drop = getattr(self.database, "drop_session", None)
        if drop is not None and session:
            drop(session)

    def health(self) -> dict[str, Any]:
        """Database and LLM status, for /healthz, the UI and the CLI."""
        db: dict[str, Any] = {"ok": True, "name": self.database.name,
                              "dialect": self.database.dialect}
        try:
            db["tables"] = len(self.snapshot().tables)
        except TableChatError as exc:
            db = {"ok": False, "error": str(exc)}
        llm = self.llm.health()
        engine = "llm" if llm["reachable"] else "offline"
        return {"ok": bool(db.get("ok")), "database": db, "llm": llm, "engine": engine}

    def close(self) -> None:
        """Close the LLM client (and stop an embedded model) and the database."""
        if self.llm.agent is not None:  # a client we built: close its connections
            with contextlib.suppress(Exception):  # closing must not fail, nor hang
                _loop.submit(self.llm.aclose()).result(timeout=5)
        self.llm.stop()
        self.database.close()

    def __enter__(self) -> TableChat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["TableChat", "UnsafeSQLError"]

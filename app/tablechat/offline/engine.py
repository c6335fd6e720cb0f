"""The offline engine: answers common questions with no LLM, and says when it can't.

``OfflineEngine(db, semantic)`` is what ``tablechat.connect`` installs. ``run(ctx, usage)``
streams the same events as the LLM agent; ``plan(question, snapshot)`` is the synchronous
entry point the eval harness uses.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from .. import _loop
from .. import events as ev
from ..agent.context import Message, QuestionContext, normalize_history
from ..answer import Usage
from ..chart import chart_spec
from ..errors import TableChatError
from ..semantic import SemanticLayer
from ..sql.database import Database
from ..sql.schema import SchemaSnapshot
from . import followup
from .build import PlanError, SQLBuilder
from .explain import interpretation, plural
from .index import IndexBuilder, SchemaIndex
from .intent import Intent
from .parse import Parsed, Parser
from .reply import answer_text, chat_text, decline_text, examples
from .resolve import Resolver

log = logging.getLogger(__name__)
THRESHOLD = 0.65
HISTORY_QUESTIONS = 4
SIGNAL_KWS = frozenset({"count", "cmp", "between", "cmpprop", "group", "order", "top"})


@dataclass(slots=True)
class Plan:
    """What the engine made of one question."""

    question: str
    kind: str  # "answer", "decline" or "chat"
    sql: str | None = None
    confidence: float = 0.0
    understood: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    intent: Intent | None = None
    tree: exp.Expr | None = None
    followup: bool = False
    carried: list[str] = field(default_factory=list)  # context kept from earlier questions

    @property
    def answerable(self) -> bool:
        return self.kind == "answer" and self.sql is not None


class OfflineEngine:
    """Answers questions from the schema, the semantic layer and the data's values."""

    name = "offline"
    memory: Any = None  # tablechat.memory.Memory or StoreMemory: verified examples

    def __init__(self, db: Database, semantic: SemanticLayer | None = None, *,
                 threshold: float = THRESHOLD) -> None:
        self.db = db
        self.semantic = semantic
        self.threshold = threshold
        self._indexes: dict[Any, SchemaIndex] = {}
        self._lock = threading.Lock()

    # -- indexes ------------------------------------------------------------------------------
    def index(self, snapshot: SchemaSnapshot, session: str | None = None) -> SchemaIndex:
        """The index of ``snapshot`` (built once per database, and per session with uploads)."""
        base_tables = {n: t for n, t in snapshot.tables.items() if not t.session_only}
        extra = [t for t in snapshot.tables.values() if t.session_only]
        base_key = ("base", tuple(sorted((n, len(t.columns)) for n, t in base_tables.items())))
        with self._lock:
            base = self._indexes.get(base_key)
            if base is None:
                snap = SchemaSnapshot(snapshot.dialect, base_tables, snapshot.name)
                base = IndexBuilder(self.db, self.semantic, None).build(snap)
                self._indexes[base_key] = base
            if not extra:
                return base
            key = (session, base_key, tuple(sorted((t.name, len(t.columns), t.row_count)
                                                   for t in extra)))
            index = self._indexes.get(key)
            if index is None:
                index = IndexBuilder(self.db, self.semantic, session).build(snapshot, base=base)
                self._indexes = {k: v for k, v in self._indexes.items()
                                 if k[0] == "base" or k[0] != session}
                self._indexes[key] = index
            return index

    # -- planning -----------------------------------------------------------------------------
    def _intent(self, question: str, index: SchemaIndex, context: Intent | None = None,
                *, partial: bool = False) -> tuple[Intent, Parsed]:
        parsed = Parser(question, index).parse()
        intent = Resolver(parsed, index, context, partial=partial).run()
        return intent, parsed

    def _sql(self, intent: Intent, index: SchemaIndex, parsed: Parsed | None
             ) -> tuple[str | None, exp.Expr | None, float, list[str]]:
        hints = {t.stem for t in parsed.tokens} if parsed is not None else set()
        try:
            built = SQLBuilder(index, hints).build(intent)
        except PlanError as exc:
            return None, None, 0.0, [str(exc)]
        return built.sql, built.tree, built.penalty, built.notes

    def _finish(self, question: str, intent: Intent, index: SchemaIndex,
                parsed: Parsed | None, *, is_followup: bool = False) -> Plan:
        sql, tree, penalty, notes = self._sql(intent, index, parsed)
        confidence = round(intent.confidence * penalty, 3)
        missing = list(dict.fromkeys(intent.missing + notes))
        kind = "answer" if sql is not None and confidence >= self.threshold else "decline"
        return Plan(question, kind, sql if kind == "answer" else None, confidence,
                    intent.understood, missing, intent, tree if kind == "answer" else None,
                    is_followup)

    def analyze(self, question: str, snapshot: SchemaSnapshot, history: Any = None,
                session: str | None = None) -> Plan:
        """Understand ``question`` (given the conversation so far) and plan its SQL."""
        index = self.index(snapshot, session)
        messages = normalize_history(history)
        intent, parsed = self._intent(question, index)
        if self._is_chat(parsed) and not messages:
            return Plan(question, "chat", confidence=1.0)
        own = self._finish(question, intent, index, parsed)
        previous = [m for m in messages if m.role == "user" and m.content.strip()]
        if not previous:
            return own
        marked = followup.looks_like_followup(question)
        if own.answerable and (not followup.marked_as_followup(question) or (
                not followup.strongly_marked(question) and self._has_subject(parsed))):
            return own  # a question with its own subject is a new question (issue 12)
        fu = self._followup(question, index, messages)
        if fu is not None and fu.answerable and (marked or fu.confidence > own.confidence):
            return fu
        if own.kind == "decline" and self._is_chat(parsed):
            return Plan(question, "chat", confidence=1.0)
        return own

    @staticmethod
    def _has_subject(parsed: Parsed) -> bool:
        """The question names what it wants itself: a measure, a column or table to show or
        group by, a ranking. "top 5 products by revenue" has; "only Europe" has not."""
        return bool(parsed.projections or any(m.ref is not None for m in parsed.measures)
                    or any(ref is not None for ref, _b, _p in parsed.groups)
                    or any(r.ref is not None for r in parsed.ranks))

    def _is_chat(self, parsed: Parsed) -> bool:
        for it in parsed.items:
            if it.slot is None:
                if it.date is not None:
                    return False
                continue
            if any(m.kind in ("schema", "value", "quoted", "number") for m in it.slot.mentions):
                return False
            if set(it.kws) & SIGNAL_KWS:
                return False
        return True

    def _replay(self, questions: list[str], index: SchemaIndex) -> Intent | None:
        """The intent of the conversation so far: each question applied to the one before."""
        intent: Intent | None = None
        for q in questions[-HISTORY_QUESTIONS:]:
            own, parsed = self._intent(q, index)
            if own.confidence >= self.threshold and not (
                    intent is not None and followup.marked_as_followup(q) and (
                        followup.strongly_marked(q) or not self._has_subject(parsed))):
                intent = own  # a question of its own: what came before no longer applies
                continue
            if intent is None:
                continue
            delta, _ = self._intent(q, index, intent, partial=True)
            if followup.has_changes(delta) and delta.confidence >= self.threshold:
                intent = followup.merge(intent, delta)
        return intent

    def _followup(self, question: str, index: SchemaIndex, messages: list[Message]
                  ) -> Plan | None:
        questions = [m.content for m in messages if m.role == "user"]
        prev = self._replay(questions, index)
        context = prev
        delta, parsed = self._intent(question, index, context, partial=True)
        if not followup.has_changes(delta) or delta.confidence < self.threshold:
            return None
        if prev is not None:
            merged = followup.merge(prev, delta)
            plan = self._finish(question, merged, index, parsed, is_followup=True)
            if plan.answerable:
                plan.carried = followup.carried(prev, delta, merged)
                return plan
        last_sql = next((m.sql for m in reversed(messages) if m.sql), None)
        if last_sql:
            sql = followup.apply_to_sql(last_sql, delta, index)
            if sql is not None:
                return Plan(question, "answer", sql, delta.confidence, delta.understood,
                            delta.missing, delta, None, True,
                            carried=["the previous answer's query"])
        return None

    def plan(self, question: str, snapshot: SchemaSnapshot, history: Any = None,
             session: str | None = None) -> Plan | None:
        """The plan when the engine is confident enough to answer, else None."""
        result = self._safe_analyze(question, snapshot, history, session)
        return result if result.answerable else None

    def _safe_analyze(self, question: str, snapshot: SchemaSnapshot, history: Any = None,
                      session: str | None = None) -> Plan:
        """:meth:`analyze`, where a failure to understand becomes a decline, not an error.

        Database errors (``TableChatError``) still propagate."""
        try:
            plan = self.analyze(question, snapshot, history, session)
        except TableChatError:
            raise
        except Exception as exc:  # a question the parser trips on: decline, log it
            log.warning("offline engine could not read %r: %s", question[:200], exc,
                        exc_info=True)
            plan = Plan(question, "decline", missing=["a way to read this question"])
        if not plan.answerable and self.memory is not None:  # verified examples (issue 14)
            from .memory import recall

            plan = recall(self.memory, self.db, question, snapshot, history) or plan
        return plan

    # -- suggestions ----------------------------------------------------------------------------
    def suggestions(self, plan: Plan, ctx: QuestionContext, limit: int = 3) -> list[str]:
        """Up to ``limit`` rewordings of a refused question that this engine answers: each is
        planned and run before it is offered, so a suggestion never leads to another refusal."""
        index = self.index(ctx.snapshot, ctx.session)
        cands: list[str] = list(self._from_reading(plan))
        cands += examples(index, n=6)
        out: list[str] = []
        for q in dict.fromkeys(cands):
            if len(out) >= limit:
                break
            if q.lower() == plan.question.lower() or not self._works(q, ctx):
                continue
            out.append(q[:1].upper() + q[1:])
        return out

    @staticmethod
    def _from_reading(plan: Plan) -> list[str]:
        """Questions built from what was understood of a refused one ("How many orders have
        status cancelled?" for "the ratio of cancelled orders to all orders")."""
        intent = plan.intent
        if intent is None or not intent.subject:
            return []
        subject = plural(intent.subject.replace("_", " "))
        out = []
        for c in intent.conds:
            if c.op == "=" and len(c.values) == 1 and isinstance(c.values[0], str) and \
                    c.col.table == intent.subject and c.col.column.lower() != "name":
                out.append(f"How many {subject} have {c.col.column.replace('_', ' ')} "
                           f"{c.values[0]}?")
        out.append(f"How many {subject} are there?")
        return out

    def _works(self, question: str, ctx: QuestionContext) -> bool:
        try:
            plan = self.analyze(question, ctx.snapshot, None, ctx.session)
            if not plan.answerable or plan.sql is None:
                return False
            return bool(ctx.run(ctx.check(plan.sql)).rows)
        except Exception as exc:  # a suggestion that fails is simply not offered
            log.debug("suggestion %r not offered: %s", question, exc)
            return False

    # -- the event stream ---------------------------------------------------------------------
    async def run(self, ctx: QuestionContext, usage: Usage) -> AsyncIterator[ev.Event]:
        yield ev.Status(step="understand", message="reading the question (offline engine)")
        plan = await _loop.in_thread(self._safe_analyze, ctx.question, ctx.snapshot,
                                     ctx.history, ctx.session)
        if plan.kind == "chat":
            index = await _loop.in_thread(self.index, ctx.snapshot, ctx.session)
            yield ev.AnswerText(text=chat_text(index), engine=self.name)
            return
        if not plan.answerable or plan.sql is None:
            tips = await _loop.in_thread(self.suggestions, plan, ctx)
            text = decline_text(plan.intent, tips)
            unknown = plan.intent.unknown if plan.intent is not None else []
            short = ("not answered: " + ", ".join(f"“{w}”" for w in unknown) + " not understood"
                     if unknown else "not answered: not sure enough of the reading")
            yield ev.Interpretation(step="refused", message=short, suggestions=tuple(tips),
                                    confidence=plan.confidence)
            yield ev.AnswerText(text=text, engine=self.name)
            return
        index = await _loop.in_thread(self.index, ctx.snapshot, ctx.session)
        intent = plan.intent or Intent()
        reading = interpretation(intent, index, plan.carried)
        yield ev.Interpretation(step="interpretation", message=reading, interpretation=reading,
                                confidence=plan.confidence)
        checked = ctx.check(plan.sql)
        yield ev.SQL(sql=checked.sql, attempt=1, source=plan.sql)
        yield ev.Status(step="run", message="running the query")
        result = await _loop.in_thread(ctx.run, checked)
        yield ev.Table(columns=result.columns, rows=result.rows, total_rows=len(result.rows),
                       truncated=result.truncated)
        spec = chart_spec(result.columns, result.rows)
        if spec is not None:
            yield ev.Chart(spec=spec)
        text = answer_text(intent, result.columns, result.rows, result.truncated, index)
        if plan.carried:
            text += " (Kept from your earlier question: " + ", ".join(plan.carried) + ".)"
        yield ev.AnswerText(text=text, engine=self.name)

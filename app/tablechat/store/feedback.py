"""``TableChat.feedback``: a person's vote, comment or corrected SQL on an answer, kept in the
store with what produced the answer; a vote up or a correction makes the question→SQL pair a
verified example when the ``verifiers`` policy lets that person verify.

Feedback text is plain text, bounded (``feedback_max_chars``), stripped of control
characters; it never reaches a model unless it became a verified example.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, RetryableSQLError
from .base import Example, FeedbackError, FeedbackRecord, Store

if TYPE_CHECKING:
    from ..answer import Answer
    from ..config import Settings
    from ..core import TableChat

CONTEXT_MESSAGES = 10  # the conversation kept with a vote: the last ten messages
CONTEXT_CHARS = 2000
PRINCIPAL_CHARS = 200
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def plain_text(text: str, limit: int) -> str:
    """``text`` without control or direction-changing characters, cut at ``limit``."""
    return _CONTROL_RE.sub("", text).strip()[:limit]


def may_verify(settings: Settings, principal: str | None) -> bool:
    """Does the ``verifiers`` policy let ``principal`` verify examples?"""
    policy = settings.verifiers.strip()
    if policy == "*":
        return True
    if policy.lower() == "none":
        return False
    if policy.lower() == "named":
        return bool(principal)
    allowed = {p.strip() for p in policy.split(",") if p.strip()}
    return principal is not None and principal in allowed


def prompt_version() -> str:
    """A short hash of the SQL prompt template: which prompt produced an answer."""
    from ..agent.prompts import load_template

    return hashlib.sha256(load_template("sql").encode()).hexdigest()[:12]


def store_for(tc: TableChat) -> Store:
    """The store of ``tc``'s settings; refuses a store that is the queried database itself."""
    from . import open_store, store_url

    url = store_url(tc.settings)
    queried = getattr(tc.database, "path", None)
    if queried is not None and url.startswith("sqlite:///") and \
            Path(url.removeprefix("sqlite:///")).resolve() == Path(queried).resolve():
        raise ConfigurationError("TABLECHAT_STORE must not be the queried database: the "
                                 "store is a database of its own")
    return open_store(url)


def _context(history: Any) -> list[dict[str, Any]]:
    from ..agent.context import normalize_history

    messages = normalize_history(history)[-CONTEXT_MESSAGES:]
    out = []
    for m in messages:
        item: dict[str, Any] = {"role": m.role, "content": plain_text(m.content, CONTEXT_CHARS)}
        if m.sql:
            item["sql"] = m.sql[:CONTEXT_CHARS]
        out.append(item)
    return out


def record_feedback(tc: TableChat, answer: Answer, *, good: bool | None = None,
                    sql: str | None = None, comment: str | None = None,
                    principal: str | None = None, session: str | None = None,
                    history: Any = None) -> FeedbackRecord:
    """Keep feedback on ``answer``; see :meth:`TableChat.feedback`."""
    limit = tc.settings.feedback_max_chars
    if good is not None and not isinstance(good, bool):
        raise FeedbackError("good must be true, false or absent")
    if (sql is not None and not isinstance(sql, str)) or (
            comment is not None and not isinstance(comment, str)):
        raise FeedbackError("sql and comment must be text")
    comment = plain_text(comment, limit) or None if comment is not None else None
    corrected = sql.strip() or None if sql is not None else None
    if good is None and corrected is None and comment is None:
        raise FeedbackError("nothing to record: give a vote (good), a corrected SQL or a "
                            "comment")
    if corrected is not None:
        if len(corrected) > limit:
            raise FeedbackError(f"the corrected SQL is too long ({len(corrected)} characters; "
                                f"the limit is {limit})")
        try:  # a correction must be SQL the guard accepts on this database
            tc.check_sql(corrected, session=session)
        except RetryableSQLError as exc:
            raise FeedbackError(f"the corrected SQL is refused: {exc}") from None
    if principal is not None:
        principal = plain_text(str(principal), PRINCIPAL_CHARS) or None
    ran = answer.source_sql or answer.sql
    store = store_for(tc)
    schema_hash = None
    if ran or corrected:  # the schema the SQL was written against, for training data
        schema_hash = store.put_schema(tc.snapshot(session).to_prompt())
    engine = answer.engine or None
    record = FeedbackRecord(
        database=tc.database.name, question=plain_text(answer.question, limit * 4),
        sql=ran, good=good, corrected_sql=corrected, comment=comment,
        context=_context(history), engine=engine,
        model=tc.model_label if engine == "llm" else engine,
        prompt_version=prompt_version() if engine == "llm" else None,
        principal=principal, session=session, schema_hash=schema_hash)
    store.add_feedback(record)
    verified = corrected or (ran if good else None)
    # a follow-up ("and in 2023?") means something only after its conversation: its pair is
    # kept as feedback (and training data, with the conversation) but is no example
    followup = any(m["role"] == "user" for m in record.context)
    if verified and answer.question and not followup and may_verify(tc.settings, principal):
        store.add_examples([Example(record.database, record.question, verified,
                                    source="correction" if corrected else "vote",
                                    verified_by=principal, feedback_id=record.id)])
        record.verified = True
    return record

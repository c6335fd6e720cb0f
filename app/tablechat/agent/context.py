"""What an engine gets to answer one question: the database, its schema, the guard, settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import Settings
from ..semantic import SemanticLayer
from ..sql.database import Database, QueryResult
from ..sql.guard import CheckedSQL, SQLGuard
from ..sql.schema import SchemaSnapshot
from .bounds import PromptLimits, bound_history, prompt_snapshot


@dataclass(slots=True)
class Message:
    role: str  # "user" or "assistant"
    content: str
    sql: str | None = None


@dataclass(slots=True)
class QuestionContext:
    question: str
    history: list[Message]
    database: Database
    snapshot: SchemaSnapshot
    guard: SQLGuard
    settings: Settings
    semantic: SemanticLayer | None = None
    session: str | None = None
    # False when the caller waits for the whole answer (ask/aask): the sentence is asked for
    # in one reply instead of streamed, which costs the client less for the same text
    stream_tokens: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    # verified question→SQL pairs of this database (``search(question, k)``), or None
    memory: Any = None
    limits: PromptLimits = field(init=False)

    def __post_init__(self) -> None:
        # every prompt built from this context sees a bounded, defused history (issue 11)
        self.limits = PromptLimits.from_settings(self.settings)
        self.history = bound_history(self.history, self.limits)

    @property
    def prompt_snapshot(self) -> SchemaSnapshot:
        """The schema as prompts may show it (see :func:`.bounds.prompt_snapshot`); the guard
        and the database keep using :attr:`snapshot`."""
        return prompt_snapshot(self.snapshot, self.limits)

    @property
    def last_sql(self) -> str | None:
        return next((m.sql for m in reversed(self.history) if m.sql), None)

    def check(self, sql: str) -> CheckedSQL:
        return self.guard.check(sql)

    def run(self, checked: CheckedSQL) -> QueryResult:
        return self.database.execute(
            checked.sql, max_rows=self.settings.max_rows, session=self.session
        )


def normalize_history(history: Any) -> list[Message]:
    """Accept OpenAI-style dicts, (user, assistant) pairs, Messages, or Gradio's content parts."""
    out: list[Message] = []
    for item in history or []:
        if isinstance(item, Message):
            out.append(item)
        elif isinstance(item, dict):
            role = str(item.get("role", "user"))
            out.append(Message(role, _content_text(item.get("content")), item.get("sql")))
        elif isinstance(item, list | tuple) and len(item) == 2:
            user, assistant = item
            if user:
                out.append(Message("user", _content_text(user)))
            if assistant:
                out.append(Message("assistant", _content_text(assistant)))
    return [m for m in out if m.role in ("user", "assistant") and (m.content or m.sql)]


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    if isinstance(content, list | tuple):
        return " ".join(_content_text(part) for part in content).strip()
    return str(content)

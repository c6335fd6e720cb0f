"""The ``Store`` interface and the records it keeps.

The store holds what must outlive a process: people's feedback on answers, verified
question→SQL examples, the schema texts prompts were built from, and sessions' metadata. It is
a database of its own, never the one questions are asked of (that one is opened read-only).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import ConfigurationError, UserFacingError


class StoreError(UserFacingError):
    """The store cannot be opened, written or read (locked too long, unreachable, too new)."""


class FeedbackError(UserFacingError):
    """Feedback or an example is malformed (nothing to record, bad SQL, too long, ...)."""


def utcnow() -> datetime:
    """Now, in UTC without tzinfo: what the store keeps (SQLite keeps no time zones)."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(slots=True)
class FeedbackRecord:
    """One person's verdict on one answer."""

    database: str
    question: str
    sql: str | None = None  # the SQL that ran
    good: bool | None = None  # None: a comment or a correction with no vote
    corrected_sql: str | None = None  # the SQL the person saved as the right answer
    comment: str | None = None
    context: list[dict[str, Any]] = field(default_factory=list)  # the conversation before
    engine: str | None = None
    model: str | None = None
    prompt_version: str | None = None
    principal: str | None = None  # who gave it: a user name or key label, never a secret
    session: str | None = None
    schema_hash: str | None = None  # the schema text the model saw (Store.schema_text)
    id: int | None = None
    created_at: datetime = field(default_factory=utcnow)
    verified: bool = False  # this feedback made its pair an example (not stored: see examples)


@dataclass(slots=True)
class Example:
    """A verified question→SQL pair for one database."""

    database: str
    question: str
    sql: str
    source: str = "file"  # "file", "vote" (an answer marked good) or "correction"
    verified_by: str | None = None
    feedback_id: int | None = None
    id: int | None = None
    created_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class SessionInfo:
    """A chat session's metadata (who, when), shared by every server process."""

    id: str
    principal: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    last_seen: datetime = field(default_factory=utcnow)
    data: dict[str, Any] = field(default_factory=dict)


class Store(abc.ABC):
    """Where feedback, verified examples and sessions persist. One implementation per kind
    of backend (:class:`~tablechat.store.sql.SQLStore` covers SQLite and PostgreSQL)."""

    url: str

    # -- feedback -----------------------------------------------------------------------------
    @abc.abstractmethod
    def add_feedback(self, record: FeedbackRecord) -> int:
        """Keep ``record``; returns its id."""

    @abc.abstractmethod
    def feedback(self, *, database: str | None = None, since: datetime | None = None,
                 limit: int | None = None) -> list[FeedbackRecord]:
        """Feedback records, oldest first (only ``database``'s, only from ``since`` on)."""

    @abc.abstractmethod
    def count_feedback(self, *, database: str | None = None) -> int:
        """How many feedback records the store holds."""

    @abc.abstractmethod
    def purge_feedback(self, before: datetime) -> int:
        """Delete feedback given before ``before``; returns how many records went."""

    # -- examples -----------------------------------------------------------------------------
    @abc.abstractmethod
    def add_examples(self, examples: list[Example]) -> list[int]:
        """Keep ``examples`` (in one transaction); returns their ids."""

    @abc.abstractmethod
    def examples(self, *, database: str | None = None) -> list[Example]:
        """Verified examples, oldest first (only ``database``'s when given)."""

    @abc.abstractmethod
    def remove_examples(self, ids: list[int]) -> int:
        """Delete the examples with these ids; returns how many there were."""

    @abc.abstractmethod
    def examples_revision(self, database: str) -> tuple[int, int]:
        """A cheap token that changes whenever ``database``'s examples change (cache key)."""

    # -- schema texts -------------------------------------------------------------------------
    @abc.abstractmethod
    def put_schema(self, text: str) -> str:
        """Keep a schema text once; returns its hash (what feedback records point to)."""

    @abc.abstractmethod
    def schema_text(self, schema_hash: str) -> str | None:
        """The schema text with this hash, if kept."""

    # -- sessions -----------------------------------------------------------------------------
    @abc.abstractmethod
    def touch_session(self, session: str, *, principal: str | None = None,
                      data: dict[str, Any] | None = None) -> SessionInfo:
        """Create ``session`` or mark it seen now (merging ``data`` into its metadata)."""

    @abc.abstractmethod
    def session(self, session: str) -> SessionInfo | None:
        """A session's metadata, if known."""

    @abc.abstractmethod
    def end_session(self, session: str) -> bool:
        """Forget a session; False when it was unknown."""

    @abc.abstractmethod
    def sessions(self, prefix: str) -> list[SessionInfo]:
        """Every session whose id starts with ``prefix`` (API sessions, logins), oldest
        first."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""


def parse_date(text: str) -> datetime:
    """``2025-01-31`` or an ISO date-time (a zone is converted to UTC), as the store keeps it.

    Raises :class:`ConfigurationError` with a one-line message otherwise."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigurationError(
            f"not a date: {text!r} (use YYYY-MM-DD or an ISO date-time)") from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value

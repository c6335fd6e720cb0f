"""The typed events a question produces.

Every front end (Python API, CLI, web UI, REST/SSE, OpenAI facade) consumes the same stream;
none reaches into the agent. Status and error messages are scrubbed when the event is made
(:func:`tablechat.redact.scrub`: URL credentials, bearer tokens, server paths), so no code path
that words one from an exception or a setting can carry a secret out (issue 11).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .redact import scrub

Kind = Literal["status", "sql", "table", "chart", "token", "answer", "error", "done"]


@dataclass(frozen=True, slots=True)
class Event:
    kind: Kind

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **{k: v for k, v in asdict(self).items() if k != "kind"}}


@dataclass(frozen=True, slots=True)
class Status(Event):
    """A step has started: ``step`` is a short machine name, ``message`` is for people."""

    step: str = ""
    message: str = ""
    kind: Kind = "status"

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", scrub(self.message))


@dataclass(frozen=True, slots=True)
class Interpretation(Status):
    """How the question was read, for the person to check ("Read as: revenue per month, orders
    in 2024"), and after a refusal the rewordings that can be answered (``suggestions``, each
    verified by running it). A status event, so a front end that knows no more shows
    ``message``; ``confidence`` is the engine's own score (0-1), or None."""

    interpretation: str = ""
    suggestions: tuple[str, ...] = ()
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class SQL(Event):
    """A query passed the guard: ``sql`` is what runs (with the row cap imposed), ``source``
    the query as it was written (for running it again without that cap: an export)."""

    sql: str = ""
    attempt: int = 1
    source: str = ""
    kind: Kind = "sql"


@dataclass(frozen=True, slots=True)
class Table(Event):
    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    total_rows: int = 0
    truncated: bool = False
    kind: Kind = "table"


@dataclass(frozen=True, slots=True)
class Chart(Event):
    spec: dict[str, Any] = field(default_factory=dict)
    kind: Kind = "chart"


@dataclass(frozen=True, slots=True)
class Token(Event):
    text: str = ""
    kind: Kind = "token"


@dataclass(frozen=True, slots=True)
class AnswerText(Event):
    """The final answer sentence (the concatenation of the streamed tokens, or a whole text)."""

    text: str = ""
    engine: str = ""
    kind: Kind = "answer"


@dataclass(frozen=True, slots=True)
class Error(Event):
    """An error for the person. ``error_type`` names the exception class."""

    message: str = ""
    error_type: str = ""
    retryable: bool = False
    kind: Kind = "error"

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", scrub(self.message))


@dataclass(frozen=True, slots=True)
class Done(Event):
    ok: bool = True
    kind: Kind = "done"
